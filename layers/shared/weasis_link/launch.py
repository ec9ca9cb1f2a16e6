"""Launch while the manifest builds: answer the launch at once, build the manifest in parallel.

The Java connectors start Weasis while they query the PACS (weasis-facts §3.1, §4.4); this is the serverless form:

1. `Launcher.launch` (API function) checks everything that can be checked without the PACS (token, criteria,
   archive selection, launch options, URI length), writes the pending marker `<id>.pending` (storage.py), hands a
   `BuildRequest` to the dispatcher and returns the weasis:// URI carrying the short link. Its latency does not
   depend on the study: no PACS query, one small PutObject, one asynchronous invocation.
2. `Builder.run_build` (builder function on AWS, a worker thread locally) queries the archives and stores the
   manifest under the final key, or, when the build fails, a manifest whose ERROR <Message> says why, so the user
   reads the reason in Weasis instead of facing an empty viewer.
3. GET /manifests/{id} (manifest_links.py) waits for the final key.

Dispatchers: `LambdaDispatcher` (Invoke with InvocationType=Event, when BUILDER_FUNCTION_NAME is set),
`ThreadDispatcher` (the local stack), `InlineDispatcher` (builds before answering: the safe fallback inside a Lambda
function that has no builder configured, whose background threads would be frozen after the response);
`make_dispatcher` chooses, and runtime.build_runtime wires the chosen one between the `Launcher` and the `Builder`.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from weasis_link.audit import AuditContext, ManifestSummary, disclosure_event, query_event
from weasis_link.audit_trail import AuditTrail
from weasis_link.auth import Caller
from weasis_link.criteria import QueryCriteria, criteria_from_pairs
from weasis_link.errors import (
    AllArchivesFailed,
    ArchiveFailure,
    AuditUnavailable,
    BuilderUnavailable,
    WeasisLinkError,
    error_code,
)
from weasis_link.fingerprint import manifest_fingerprint
from weasis_link.launch_uri import LaunchOptions, bounded_weasis_uri
from weasis_link.manifest_links import short_link
from weasis_link.patient_context import check_manifest
from weasis_link.service import BeforeStore, ManifestService
from weasis_link.storage import MANIFEST_ID, ManifestStore, new_manifest_id

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

logger = logging.getLogger(__name__)

# Time a build may need beyond the archive deadline: the asynchronous invocation's queueing and cold start, the
# XML and gzip, the PutObject. Past `launched + archive deadline + this`, GET /manifests/{id} stops waiting.
BUILD_OVERHEAD_SECONDS: Final = 15.0
BuildOutcome = Literal["built", "failed", "timed-out", "expired"]


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What a build did, for metrics (metrics.py): no patient data, no manifest id."""

    outcome: BuildOutcome
    seconds: float = 0.0
    archive_seconds: dict[str, float] = field(default_factory=dict)  # archives that answered, or failed, in time
    archive_failures: list[ArchiveFailure] = field(default_factory=list)


class BuildRequest(BaseModel):
    """What the builder needs, as JSON (the asynchronous invocation's payload). It carries the caller's token, to
    pass it to the PACS and inject it into the manifest: never log it (repr=False keeps it out of reprs)."""

    # defer_build: validated only by launches and the builder function, not by GET /manifests (cold start)
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    version: Literal[1] = 1
    manifest_id: str = Field(pattern=MANIFEST_ID.pattern)
    expires_at: int
    query: list[tuple[str, str]] = Field(max_length=1000)
    token: str = Field(repr=False, max_length=8192)
    subject: str
    scopes: list[str] = Field(default_factory=list)
    token_expires_at: int
    launched_at: float
    # The token's claims (authorization rules read them again in the builder) and who/where for the audit trail.
    claims: dict[str, Any] = Field(default_factory=dict, repr=False)
    audit: AuditContext | None = None

    def caller(self) -> Caller:
        return Caller(
            token=self.token,
            subject=self.subject,
            scopes=frozenset(self.scopes),
            expires_at=self.token_expires_at,
            claims=self.claims,
        )


class BuildDispatcher(Protocol):
    def dispatch(self, request: BuildRequest) -> None:
        """Start building; raise BuilderUnavailable when the build cannot be started."""
        ...


class LambdaDispatcher:
    """Invokes the builder function asynchronously (InvocationType=Event): Lambda queues the event and answers 202."""

    def __init__(self, function_name: str, client: LambdaClient) -> None:
        self._function_name = function_name
        self._client = client

    def dispatch(self, request: BuildRequest) -> None:
        try:
            answer: Any = self._client.invoke(
                FunctionName=self._function_name,
                InvocationType="Event",
                Payload=request.model_dump_json().encode("utf-8"),
            )
        except Exception as exc:
            code = error_code(exc)
            logger.error("builder invocation failed", extra={"error": code})
            raise BuilderUnavailable(f"The manifest builder could not be started ({code}).") from None
        if answer.get("StatusCode") != 202:
            raise BuilderUnavailable(f"The manifest builder refused the build (status {answer.get('StatusCode')}).")


def lambda_client(region: str) -> LambdaClient:
    """Short timeouts: an Event invocation only queues the payload, and the launch is waiting for it."""
    from botocore.config import Config

    from weasis_link.storage import aws_session

    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    return aws_session().client("lambda", region_name=region, config=config)


class ThreadDispatcher:
    """Builds on background threads of this process (the local stack, where the process outlives the request)."""

    def __init__(self, run: Callable[[BuildRequest], object], workers: int = 4) -> None:
        self._run = run
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="manifest-builder")

    def dispatch(self, request: BuildRequest) -> None:
        try:
            self._pool.submit(self._run_logged, request)
        except RuntimeError as exc:  # the pool is shut down: the process is stopping
            raise BuilderUnavailable("The manifest builder is stopping.") from exc

    def _run_logged(self, request: BuildRequest) -> None:
        # A future nobody waits for keeps its exception to itself: log it, as Lambda would for the builder.
        try:
            self._run(request)
        except Exception:
            logger.exception("build failed", extra={"manifest": manifest_fingerprint(request.manifest_id)})

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class InlineDispatcher:
    """Builds before the launch answers: correct anywhere, but the launch then waits for the PACS."""

    def __init__(self, run: Callable[[BuildRequest], object]) -> None:
        self._run = run

    def dispatch(self, request: BuildRequest) -> None:
        self._run(request)


def make_dispatcher(
    builder_function_name: str | None, region: str, run: Callable[[BuildRequest], object], *, on_lambda: bool
) -> BuildDispatcher:
    """The builder function when one is configured; else threads, except inside Lambda (frozen after the answer)."""
    if builder_function_name:
        return LambdaDispatcher(builder_function_name, lambda_client(region))
    if on_lambda:
        return InlineDispatcher(run)
    return ThreadDispatcher(run)


@dataclass(frozen=True, slots=True)
class LaunchResult:
    manifest_id: str
    manifest_link: str  # the short link <api>/manifests/{id}
    weasis_url: str
    expires_at: dt.datetime
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class Launcher:
    """The API side: register a build, start it, answer the launch URI."""

    service: ManifestService
    store: ManifestStore
    dispatcher: BuildDispatcher
    build_deadline_seconds: float
    clock: Callable[[], float] = time.time

    def launch(
        self,
        query: Sequence[tuple[str, str]],
        criteria: QueryCriteria,
        caller: Caller,
        options: LaunchOptions | None,
        base_url: str,
        *,
        audit: AuditContext | None = None,
        before_dispatch: Callable[[Sequence[str]], None] | None = None,
        before_store: BeforeStore | None = None,
    ) -> LaunchResult:
        """Register the build, start it, and return the launch URI (which works while the build runs).

        `query` holds the criteria parameters the builder parses again (`criteria` is what they parsed to here);
        it must not hold access_token: the token travels once, in its own field. `before_dispatch` (the audit
        trail) is called before anything is written; if it raises, nothing is."""
        # An unknown archive or a deactivated criterion is refused now, not discovered by the builder.
        archive_ids = self.service.archives.select(criteria, caller)
        if self.service.archives.needs_result_check(criteria, archive_ids) or self._confined_by_answers(
            criteria, caller
        ):
            # A 409 (ambiguous patient, too many for a wildcard) or a 403 (a UID of another patient than the token's
            # context) must reach the caller, not a Weasis dialog: such requests are answered once the archives have
            # answered (docs/security.md).
            if before_dispatch is not None:
                before_dispatch(archive_ids)
            result = self.service.create_manifest(
                criteria, caller, options, base_url=base_url, before_store=before_store
            )
            return LaunchResult(
                result.manifest_id, result.manifest_link, result.weasis_url, result.expires_at, result.warnings
            )
        expires_at = self.service.expiry(caller)
        manifest_id = new_manifest_id(expires_at)
        link = short_link(base_url, manifest_id)
        uri = bounded_weasis_uri(link, options)
        now = self.clock()
        if before_dispatch is not None:
            before_dispatch(archive_ids)
        self.store.put_pending(manifest_id, expires_at, now + self.build_deadline_seconds + BUILD_OVERHEAD_SECONDS)
        request = BuildRequest(
            manifest_id=manifest_id,
            expires_at=int(expires_at.timestamp()),
            query=[(k, v) for k, v in query if k != "access_token"],
            token=caller.token,
            subject=caller.subject,
            scopes=sorted(caller.scopes),
            token_expires_at=caller.expires_at,
            launched_at=now,
            claims=dict(caller.claims),
            audit=audit,
        )
        self.dispatcher.dispatch(request)
        warning = self.service.access.token_warning(caller, archive_ids)
        warnings = self.service.archives.deactivation_warnings(criteria) + ([warning] if warning else [])
        return LaunchResult(manifest_id, link, uri, expires_at, warnings)

    def _confined_by_answers(self, criteria: QueryCriteria, caller: Caller) -> bool:
        """Whether the token's patient context can only be checked on the archives' answers: keys other than
        patientID (UIDs, accession numbers) say nothing about the patient until the archives answer."""
        keyed = criteria.study_uids or criteria.series_uids or criteria.object_uids or criteria.accession_numbers
        return bool(keyed) and self.service.patient_in_context(caller) is not None


@dataclass(frozen=True, slots=True)
class Builder:
    """The builder side (the builder function on AWS, a worker thread locally): build a launch's manifest."""

    service: ManifestService
    store: ManifestStore
    build_deadline_seconds: float
    clock: Callable[[], float] = time.time
    audit: AuditTrail | None = None  # records what a build discloses before it is stored

    def run_build(self, request: BuildRequest) -> BuildOutcome:
        return self.run_build_reported(request).outcome

    def run_build_reported(self, request: BuildRequest) -> BuildReport:
        """Build and store the manifest of a launch; on failure store one that says why. Never raises for a PACS
        failure: the user learns about it in Weasis (the builder function raises afterwards, to count it)."""
        started = time.perf_counter()
        expires_at = dt.datetime.fromtimestamp(request.expires_at, tz=dt.UTC)
        if request.expires_at <= self.clock():
            logger.warning(
                "build skipped: its manifest has already expired",
                extra={"manifest": manifest_fingerprint(request.manifest_id)},
            )
            return BuildReport("expired")
        outcome: BuildOutcome = "built"
        archive_ids: list[str] = []
        archive_seconds: dict[str, float] = {}
        archive_failures: list[ArchiveFailure] = []
        summary: ManifestSummary | None = None  # what the built manifest lists (a failure manifest lists nobody)
        try:
            criteria = criteria_from_pairs(request.query)
            archive_ids = self.service.archives.select(criteria, request.caller())
            built = self.service.build(criteria, request.caller(), self.build_deadline_seconds)
            archive_seconds = {o.archive_id: o.seconds for o in built.outcomes}
            archive_failures = [o.failure for o in built.outcomes if o.failure is not None]
            body = built.body_gzip
            summary = built.summary
            check_manifest(summary.patients, self.service.patient_in_context(request.caller()))
        except AllArchivesFailed as exc:
            archive_failures = list(exc.failures)
            outcome = "timed-out" if exc.failures and all(f.kind == "timeout" for f in exc.failures) else "failed"
            details = " ".join(f"{f.archive_id}: {f.detail}." for f in exc.failures)
            body = self.service.failure_manifest(
                [f.archive_id for f in exc.failures],
                "The archive could not be queried",
                f"No image list could be obtained. {details} Try again in a moment.",
            )
        except WeasisLinkError as exc:
            outcome = "failed"
            logger.warning(
                "build refused", extra={"manifest": manifest_fingerprint(request.manifest_id), "code": exc.code}
            )
            body = self.service.failure_manifest(
                archive_ids or self.service.archives.default_ids(), "The images could not be listed", exc.detail
            )
        except Exception:
            outcome = "failed"
            logger.exception("build crashed", extra={"manifest": manifest_fingerprint(request.manifest_id)})
            body = self.service.failure_manifest(
                archive_ids or self.service.archives.default_ids(),
                "The images could not be listed",
                "An unexpected error stopped the preparation of the image list; it has been logged.",
            )
        body, outcome = self._audited(request, body, summary, outcome, archive_ids, expires_at)
        self.store.put(request.manifest_id, body, expires_at)
        logger.info(
            "build stored",
            extra={
                "manifest": manifest_fingerprint(request.manifest_id),
                "outcome": outcome,
                "seconds": round(time.perf_counter() - started, 3),
                "since_launch_seconds": round(max(0.0, self.clock() - request.launched_at), 3),
            },
        )
        return BuildReport(outcome, time.perf_counter() - started, archive_seconds, archive_failures)

    def _audited(
        self,
        request: BuildRequest,
        body: bytes,
        summary: ManifestSummary | None,
        outcome: BuildOutcome,
        archive_ids: Sequence[str],
        expires_at: dt.datetime,
    ) -> tuple[bytes, BuildOutcome]:
        """Record what the build discloses before it is stored; when the trail refuses, store a manifest that says
        so instead of the images (fail closed)."""
        if self.audit is None or not self.audit.enabled or request.audit is None:
            return body, outcome
        try:
            if outcome == "built" and summary is not None:
                self.audit.record(disclosure_event(request.audit, request.manifest_id, summary, expires_at))
            else:
                self.audit.record(
                    query_event(
                        request.audit, archive_ids, outcome="8", outcome_desc="the image list could not be built"
                    )
                )
        except AuditUnavailable as exc:
            body = self.service.failure_manifest(
                list(archive_ids) or self.service.archives.default_ids(), "The images could not be listed", exc.detail
            )
            return body, "failed"
        return body, outcome
