"""Manifest builder (invoked asynchronously by the API function, InvocationType=Event): builds a launch's manifest
while Weasis starts, and stores it, or a manifest that says why it could not be built.

Thin: validate the payload, call `Builder.run_build_reported` (weasis_link.launch), record the outcome's metrics
(metrics.py), and raise after a failed build so that it counts in the function's Errors. The payload carries the
caller's token (Lambda keeps it in its internal queue, encrypted): the event is never logged, and retries are off in
template.yaml (a retried build would be stale). The connector YAML is the API function's (a symbolic link
here; `sam build` copies its content).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from weasis_link.fingerprint import manifest_fingerprint
from weasis_link.launch import BuildReport, BuildRequest
from weasis_link.metrics import BuildFailed, function_metrics, record_build
from weasis_link.observability import configure_logging
from weasis_link.runtime import Runtime, build_runtime

logger = Logger()
configure_logging(logger)
metrics = function_metrics()


def make_handler(runtime: Runtime) -> Callable[[dict[str, Any], LambdaContext], dict[str, str]]:
    """The Lambda handler over `runtime` (tests make one over their own runtime; Lambda's is built below)."""

    @logger.inject_lambda_context(log_event=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, str]:
        if runtime.refresher is not None:
            runtime.refresher.refresh_if_stale()  # rotated secrets (SECRETS_MAX_AGE_SECONDS)
        try:
            request = BuildRequest.model_validate(event)
        except ValidationError as exc:
            # Field names only: the values include the token.
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            logger.error("malformed build request", extra={"fields": fields})
            record_build(metrics, BuildReport("failed"))
            raise BuildFailed("failed", []) from None
        logger.append_keys(manifest=manifest_fingerprint(request.manifest_id))
        report = runtime.builder.run_build_reported(request)
        record_build(metrics, report)
        if report.outcome in ("failed", "timed-out"):
            raise BuildFailed(report.outcome, [f.archive_id for f in report.archive_failures])
        return {"manifest": manifest_fingerprint(request.manifest_id), "outcome": report.outcome}

    return cast("Callable[[dict[str, Any], LambdaContext], dict[str, str]]", handler)  # log_metrics(...) is untyped


# Built once per container, at cold start (Lambda's init phase).
runtime = build_runtime(Path(__file__).parent)
lambda_handler = make_handler(runtime)
