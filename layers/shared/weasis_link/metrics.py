"""CloudWatch metrics of the functions (Powertools Metrics, EMF lines on stdout): one place names them, so the
alarms and the dashboard in template.yaml, docs/deploy.md and the tests agree.

The namespace and the `service` dimension come from POWERTOOLS_METRICS_NAMESPACE / POWERTOOLS_SERVICE_NAME, which
template.yaml derives from the stack name: two stacks in one account never share a series. Metrics carry no patient
data and no manifest id; the only extra dimension is the archive id (a configuration name).

Per-archive figures are emitted twice: with the `archive` dimension (dashboard) and without it (one series an
alarm can watch whatever the archives are called: CloudWatch alarms cannot aggregate across dimension values).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

if TYPE_CHECKING:
    from weasis_link.errors import ArchiveFailure
    from weasis_link.storage import CleanupReport


class BuildFigures(Protocol):
    """What a build reports (launch.BuildReport; described here so that this model-level module imports no use
    case)."""

    @property
    def outcome(self) -> str: ...
    @property
    def seconds(self) -> float: ...
    @property
    def archive_seconds(self) -> Mapping[str, float]: ...
    @property
    def archive_failures(self) -> Sequence[ArchiveFailure]: ...


# Builder: one of these per build.
BUILD_OUTCOME_METRICS: Final[Mapping[str, str]] = {
    "built": "BuildsSucceeded",
    "failed": "BuildsFailed",
    "timed-out": "BuildsTimedOut",
    "expired": "BuildsExpired",  # the event reached the builder after its manifest's expiry
}
BUILD_TIME: Final = "BuildTime"
# API (synchronous route) and builder.
ARCHIVE_QUERY_TIME: Final = "ArchiveQueryTime"
ARCHIVE_FAILURES: Final = "ArchiveFailures"
# Cleaner.
MANIFESTS_DELETED: Final = "ManifestsDeleted"
MANIFEST_DELETIONS_FAILED: Final = "ManifestDeletionsFailed"
CLEANUP_RUNS_COMPLETED: Final = "CleanupRunsCompleted"
CLEANUP_RUNS_FAILED: Final = "CleanupRunsFailed"


# Outside a stack (the local stack, tests), where template.yaml's per-stack names are not set.
DEFAULT_NAMESPACE: Final = "WeasisLink"
DEFAULT_SERVICE: Final = "weasis-link"


def function_metrics() -> Metrics:
    """The Powertools Metrics of a function: the stack's namespace and service (template.yaml), else the defaults,
    so that a function run without them still flushes its metrics instead of failing."""
    return Metrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
        service=os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE,
    )


class BuildFailed(Exception):
    """Raised by the builder function after a failed build has stored its error manifest and been counted: the
    invocation then counts in the function's Errors metric (asynchronous retries are off in template.yaml, so the
    PACS is not asked again). The message names the outcome only: no manifest id, no patient data."""

    def __init__(self, outcome: str, archives: Iterable[str]) -> None:
        super().__init__(f"build {outcome}: archives {', '.join(sorted(archives)) or '-'}")


def record_archive_outcomes(metrics: Metrics, seconds: Mapping[str, float], failures: Iterable[ArchiveFailure]) -> None:
    """Query time per archive, failures per archive, and the failure total."""
    for archive_id, took in seconds.items():
        with single_metric(
            name=ARCHIVE_QUERY_TIME, unit=MetricUnit.Milliseconds, value=took * 1000, namespace=metrics.namespace
        ) as metric:
            metric.add_dimension(name="archive", value=archive_id)
    failed = list(failures)
    for failure in failed:
        with single_metric(
            name=ARCHIVE_FAILURES, unit=MetricUnit.Count, value=1, namespace=metrics.namespace
        ) as metric:
            metric.add_dimension(name="archive", value=failure.archive_id)
    if failed:
        # A blob of its own, with the service dimension only, whatever else the invocation records.
        with single_metric(
            name=ARCHIVE_FAILURES, unit=MetricUnit.Count, value=len(failed), namespace=metrics.namespace
        ):
            pass


def record_build(metrics: Metrics, report: BuildFigures) -> None:
    metrics.add_metric(name=BUILD_OUTCOME_METRICS[report.outcome], unit=MetricUnit.Count, value=1)
    if report.seconds:  # expired and malformed requests built nothing
        metrics.add_metric(name=BUILD_TIME, unit=MetricUnit.Milliseconds, value=report.seconds * 1000)
    record_archive_outcomes(metrics, report.archive_seconds, report.archive_failures)


def record_cleanup(metrics: Metrics, report: CleanupReport) -> None:
    metrics.add_metric(name=CLEANUP_RUNS_COMPLETED, unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=MANIFESTS_DELETED, unit=MetricUnit.Count, value=report.deleted)
    metrics.add_metric(name=MANIFEST_DELETIONS_FAILED, unit=MetricUnit.Count, value=report.failed)


def record_cleanup_crash(metrics: Metrics) -> None:
    metrics.add_metric(name=CLEANUP_RUNS_FAILED, unit=MetricUnit.Count, value=1)
