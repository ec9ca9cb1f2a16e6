"""Manifest builder (invoked asynchronously by the API function, InvocationType=Event): builds a launch's manifest
while Weasis starts, and stores it, or a manifest that says why it could not be built.

Thin: validate the payload, call `Launcher.run_build`, report the outcome. The payload carries the caller's token
(Lambda keeps it in its internal queue, encrypted): the event is never logged, and retries are off in
template.yaml (a retried build would be stale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from weasis_link.launch import BuildRequest
from weasis_link.observability import configure_logging, manifest_reference
from weasis_link.runtime import build_runtime

logger = Logger()
configure_logging(logger)

runtime = build_runtime(Path(__file__).parent)
launcher = runtime.launcher


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, str]:
    try:
        request = BuildRequest.model_validate(event)
    except ValidationError as exc:
        # Field names only: the values include the token.
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        logger.error("malformed build request", extra={"fields": fields})
        return {"outcome": "malformed"}
    logger.append_keys(manifest=manifest_reference(request.manifest_id))  # the id itself opens the manifest
    outcome = launcher.run_build(request)
    return {"manifestId": request.manifest_id, "outcome": outcome}
