"""Manifests in S3: short-lived, encrypted, under unguessable keys, fetched by presigned GET.

Key: `<prefix><expiry epoch, 10 digits>-<32 random url-safe characters>.xml.gz` (192 random bits). The expiry
is also in the object metadata (`expires-at`, authoritative for objects we did not name), and leading the key
with it lets the cleaner stop listing at the first live manifest: S3 lists keys in order. The `.gz` extension is
what Weasis <= 4.7.1 looks at to decide to gunzip (weasis-facts takeaway 4).

A launch registers its manifest before building it: `<prefix><id>.pending` (no patient data, no token; metadata
`expires-at` and `build-deadline`) tells GET /manifests/{id} to wait rather than answer 404. The marker is never
deleted by the builder (its role cannot delete): the final key wins when both exist, and the cleaner deletes the
marker with its manifest, since it sorts by the same expiry.

Imports nothing heavier than boto3: the cleanup function uses this module.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from weasis_link.errors import ManifestNotFound, StorageError, error_code

if TYPE_CHECKING:
    import boto3.session
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

MANIFEST_SUFFIX: Final = ".xml.gz"
# While a launch's manifest is being built, `<id>.pending` says so (and until when the build may run). It carries
# no patient data and no token; it expires with its manifest and the cleaner deletes it like one.
PENDING_SUFFIX: Final = ".pending"
EXPIRES_METADATA: Final = "expires-at"
BUILD_DEADLINE_METADATA: Final = "build-deadline"
DELETE_BATCH: Final = 1000  # DeleteObjects' limit
MANIFEST_ID: Final = re.compile(r"(\d{10})-([A-Za-z0-9_-]{32})")
CONTENT_TYPE: Final = "application/gzip"
_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})
# botocore's data, trimmed to what the functions use: the models of the services whose full model costs the cold
# start most for the little the functions call (S3: 8 operations of 116; EventBridge: PutEvents, 1 of 57), and
# endpoints.json (1.2 MB for 305 services) with the functions' services only. About 36 ms of CPU less for the first
# S3 client and 3 ms for EventBridge's. Written by tools/weasis_link_dev/aws_models.py, which
# tests/unit/test_aws_models.py checks them against.
AWS_MODELS: Final = Path(__file__).parent / "aws_models"


@dataclass(frozen=True, slots=True)
class StoredManifest:
    manifest_id: str
    key: str
    expires_at: dt.datetime


def new_manifest_id(expires_at: dt.datetime) -> str:
    return f"{int(expires_at.timestamp()):010d}-{secrets.token_urlsafe(24)}"


def manifest_expiry(now: float, ttl_seconds: int) -> dt.datetime:
    """When a manifest created at `now` (epoch seconds) expires: whole seconds, UTC."""
    return dt.datetime.fromtimestamp(int(now), tz=dt.UTC) + dt.timedelta(seconds=ttl_seconds)


def expiry_of(manifest_id: str) -> dt.datetime | None:
    m = MANIFEST_ID.fullmatch(manifest_id)
    return dt.datetime.fromtimestamp(int(m[1]), tz=dt.UTC) if m else None


@functools.cache
def aws_session() -> boto3.session.Session:
    """The session of every AWS client the functions make (S3, EventBridge, Lambda, SSM, Secrets Manager): one
    session, so they share what botocore loads once (endpoints, partitions, defaults, credentials), whose loader
    finds AWS_MODELS before botocore's own models. Not boto3's default session: other users of boto3 in the process
    (the local stack, tests) keep the full models. SnapStart: forgotten after a restore (weasis_link.snapstart)."""
    import boto3.session
    import botocore.session

    core = botocore.session.get_session()
    core.set_config_variable("data_path", str(AWS_MODELS))  # searched before botocore's own data
    return boto3.session.Session(botocore_session=core)


def s3_client(region: str, endpoint_url: str | None = None) -> S3Client:
    """SigV4 and the regional virtual-host style (boto3 still presigns with SigV2 in some regions and with the
    global endpoint, which breaks signatures for new buckets); path style only against a local endpoint."""
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint_url else "virtual"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=3,
        read_timeout=10,
    )
    return aws_session().client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def put_while(
    store: ManifestStore,
    manifest_id: str,
    body: bytes | Callable[[], bytes],
    expires_at: dt.datetime,
    record: Callable[[], None] | None,
) -> None:
    """`store.put` while `record` (the audit trail's PutEvents) runs on a thread of its own: the request waits for
    the slower of the two rather than both. When `record` raises, the object just written is deleted before its
    error is raised, so nothing stays stored (no one has the manifest's id yet); when the write fails, its error is
    raised once `record` is over. Without `record`, a plain `put`. `body` may be the function that writes the
    document: it runs once `record` is under way (the event travels while the document is written)."""
    write = body if callable(body) else lambda: body
    if record is None:
        store.put(manifest_id, write(), expires_at)
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            record()
        except BaseException as exc:  # handed over to the request's thread, which raises it
            failure.append(exc)

    recorder = threading.Thread(target=run, name="audit-record", daemon=True)
    recorder.start()
    try:
        store.put(manifest_id, write(), expires_at)
    finally:
        recorder.join()
    if failure:
        try:
            store.delete(manifest_id)
        except StorageError:  # unreachable (its id was never handed out); the cleaner deletes it at expiry
            logger.error("a manifest whose audit event was refused could not be removed")
        raise failure[0]


class ManifestStore:
    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "manifests/", kms_key_arn: str | None = None
    ) -> None:
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix
        # SSE-KMS like the bucket's default: the AWS-managed key aws/s3, or the deployment's own key. Naming it on
        # each write keeps objects encrypted the same way even in a bucket configured otherwise.
        self._encryption: dict[str, Any] = {"ServerSideEncryption": "aws:kms", "BucketKeyEnabled": True}
        if kms_key_arn:
            self._encryption["SSEKMSKeyId"] = kms_key_arn

    def key_for(self, manifest_id: str) -> str:
        if not MANIFEST_ID.fullmatch(manifest_id):
            raise ManifestNotFound("This manifest link is not valid.")
        return f"{self.prefix}{manifest_id}{MANIFEST_SUFFIX}"

    def put(self, manifest_id: str, body: bytes, expires_at: dt.datetime) -> StoredManifest:
        """One PutObject: S3 writes it whole or not at all, so a failure leaves nothing behind."""
        key = self.key_for(manifest_id)
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=CONTENT_TYPE,
                CacheControl="no-store, private",
                Metadata={EXPIRES_METADATA: str(int(expires_at.timestamp()))},
                **self._encryption,
            )
        except Exception as exc:
            raise StorageError("The manifest could not be stored", exc) from None
        return StoredManifest(manifest_id, key, expires_at)

    def delete(self, manifest_id: str) -> None:
        """DeleteObject (the API function's role may delete under the prefix: what it wrote and must not keep)."""
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self.key_for(manifest_id))
        except Exception as exc:
            raise StorageError("The manifest could not be removed", exc) from None

    def put_pending(self, manifest_id: str, expires_at: dt.datetime, build_deadline: float) -> None:
        """Mark a manifest as being built: GET /manifests/{id} then waits for it instead of answering 404."""
        key = self.key_for(manifest_id).removesuffix(MANIFEST_SUFFIX) + PENDING_SUFFIX
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=b'{"state":"building"}',
                ContentType="application/json",
                CacheControl="no-store, private",
                Metadata={
                    EXPIRES_METADATA: str(int(expires_at.timestamp())),
                    BUILD_DEADLINE_METADATA: str(int(build_deadline)),
                },
                **self._encryption,
            )
        except Exception as exc:
            raise StorageError("The manifest build could not be registered", exc) from None

    def build_deadline(self, manifest_id: str) -> float | None:
        """When the build of a pending manifest must be over (epoch seconds); None when no build was registered."""
        key = self.key_for(manifest_id).removesuffix(MANIFEST_SUFFIX) + PENDING_SUFFIX
        try:
            head: Any = self._s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in _MISSING:
                return None
            raise StorageError("The manifest store cannot be read", exc) from None
        try:
            return float(head.get("Metadata", {})[BUILD_DEADLINE_METADATA])
        except (KeyError, ValueError):
            return 0.0  # a marker we cannot read: its build is considered over

    def presigned_url(self, manifest_id: str, expires_in: int) -> str:
        return self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key_for(manifest_id)},
            ExpiresIn=expires_in,
        )

    def exists(self, manifest_id: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self.key_for(manifest_id))
        except Exception as exc:
            if error_code(exc) in _MISSING:
                return False
            raise StorageError("The manifest store cannot be read", exc) from None
        return True

    # --- cleanup --------------------------------------------------------------------------------------------
    def read(self, manifest_id: str) -> bytes:
        """The stored (gzipped) manifest: the audit trail reads which patients a redeemed short link discloses."""
        try:
            answer: Any = self._s3.get_object(Bucket=self.bucket, Key=self.key_for(manifest_id))
            return bytes(answer["Body"].read())
        except Exception as exc:
            if error_code(exc) in _MISSING:
                raise ManifestNotFound("This manifest does not exist or has expired.") from None
            raise StorageError("The manifest store cannot be read", exc) from None

    def delete_expired(self, now: float | None = None) -> CleanupReport:
        """Delete every manifest whose expiry has passed; idempotent (deleting a missing key succeeds)."""
        now = time.time() if now is None else now
        report = CleanupReport()
        batch: list[str] = []
        for key in self._expired_keys(now, report):
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                self._delete_batch(batch, report)
                batch = []
        if batch:
            self._delete_batch(batch, report)
        return report

    def _expired_keys(self, now: float, report: CleanupReport) -> Iterator[str]:
        """Our keys sort by expiry, so listing stops at the first live one; a second listing resumes after every
        key of ours (any epoch, then '~', which sorts after the random part) for objects named otherwise."""
        paginator = self._s3.get_paginator("list_objects_v2")
        resume_after: str | None = None
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                report.scanned += 1
                m = MANIFEST_ID.fullmatch(_strip_suffix(key[len(self.prefix) :]))
                if m is None:
                    if self._foreign_expired(key, now, report):
                        yield key
                elif float(m[1]) <= now:
                    yield key
                else:
                    resume_after = f"{self.prefix}9999999999~"
                    break
            if resume_after is not None:
                break
        if resume_after is None:
            return
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, StartAfter=resume_after):
            for obj in page.get("Contents", []):
                report.scanned += 1
                if self._foreign_expired(obj["Key"], now, report):
                    yield obj["Key"]

    def _foreign_expired(self, key: str, now: float, report: CleanupReport) -> bool:
        """An object we did not name: its `expires-at` metadata decides; without it, the lifecycle rule will."""
        expiry = self._metadata_expiry(key)
        if expiry is None:
            report.skipped += 1
            return False
        return expiry <= now

    def _metadata_expiry(self, key: str) -> float | None:
        try:
            head: Any = self._s3.head_object(Bucket=self.bucket, Key=key)
        except Exception:
            return None
        value = head.get("Metadata", {}).get(EXPIRES_METADATA)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def _delete_batch(self, keys: list[str], report: CleanupReport) -> None:
        answer: Any = self._s3.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )
        errors = answer.get("Errors", [])
        report.deleted += len(keys) - len(errors)
        report.failed += len(errors)


@dataclass(slots=True)
class CleanupReport:
    scanned: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0


def _strip_suffix(name: str) -> str:
    """The manifest id a key of ours names, manifest or pending marker (else the name unchanged)."""
    for suffix in (MANIFEST_SUFFIX, PENDING_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
