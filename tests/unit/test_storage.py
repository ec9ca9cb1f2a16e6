"""Manifest storage: encrypted PutObject under an unguessable key, SigV4 presigned GET, minute-precise cleanup."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from weasis_link.errors import ManifestNotFound, StorageError
from weasis_link.storage import MANIFEST_ID, ManifestStore, expiry_of, new_manifest_id, s3_client
from weasis_link_dev.stored import stored_manifest

BUCKET = "weasis-link-test"
NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[ManifestStore]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = s3_client("eu-central-1")
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        yield ManifestStore(client, BUCKET)


def test_ids_are_unguessable_and_carry_their_expiry() -> None:
    ids = {new_manifest_id(NOW) for _ in range(1000)}
    assert len(ids) == 1000
    some = next(iter(ids))
    assert MANIFEST_ID.fullmatch(some) and len(some.split("-", 1)[1]) == 32  # 192 random bits
    assert expiry_of(some) == NOW


def test_put_is_encrypted_gzip_with_expiry_metadata(store: ManifestStore) -> None:
    manifest_id = new_manifest_id(NOW)
    stored = store.put(manifest_id, b"\x1f\x8bdata", NOW)
    assert stored.key == f"manifests/{manifest_id}.xml.gz"
    head = boto3.client("s3", region_name="eu-central-1").head_object(Bucket=BUCKET, Key=stored.key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["Metadata"] == {"expires-at": str(int(NOW.timestamp()))}
    assert head["ContentType"] == "application/gzip"
    assert stored_manifest(store, manifest_id) == b"\x1f\x8bdata"
    assert store.exists(manifest_id)


def test_presigned_url_is_sigv4_regional_virtual_host(store: ManifestStore) -> None:
    manifest_id = new_manifest_id(NOW)
    url = store.presigned_url(manifest_id, 300)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.scheme == "https"
    assert parts.netloc == f"{BUCKET}.s3.eu-central-1.amazonaws.com"
    assert parts.path == f"/manifests/{manifest_id}.xml.gz"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["X-Amz-Credential"][0].endswith("/eu-central-1/s3/aws4_request")


def test_malformed_ids_are_not_found_without_touching_s3(store: ManifestStore) -> None:
    for bad in ("../x", "1795342530-short", "abc", "1795342530-" + "a" * 31 + "$"):
        with pytest.raises(ManifestNotFound):
            store.key_for(bad)


def test_missing_bucket_is_a_storage_error() -> None:
    with mock_aws():
        store = ManifestStore(s3_client("eu-central-1"), "no-such-bucket")
        with pytest.raises(StorageError, match="NoSuchBucket"):
            store.put(new_manifest_id(NOW), b"x", NOW)


def test_cleanup_deletes_exactly_the_expired_manifests(store: ManifestStore) -> None:
    now = NOW.timestamp()
    expired = [new_manifest_id(NOW - dt.timedelta(seconds=s)) for s in (1, 60, 86400)]
    live = [new_manifest_id(NOW + dt.timedelta(seconds=s)) for s in (1, 300)]
    for mid in expired + live:
        store.put(mid, b"x", NOW)
    raw = boto3.client("s3", region_name="eu-central-1")
    # An object we did not name: its metadata decides.
    raw.put_object(
        Bucket=BUCKET, Key="manifests/foreign-expired", Body=b"x", Metadata={"expires-at": str(int(now) - 5)}
    )
    raw.put_object(Bucket=BUCKET, Key="other/untouched", Body=b"x")
    report = store.delete_expired(now)
    left = {o["Key"] for o in raw.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert left == {f"manifests/{m}.xml.gz" for m in live} | {"other/untouched"}
    assert report.deleted == 3 + 1 and report.failed == 0
    assert store.delete_expired(now).deleted == 0  # idempotent
