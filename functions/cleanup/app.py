"""Scheduled cleaner (EventBridge, every 5 minutes by default): deletes manifests whose expiry has passed.

Imports nothing heavier than boto3 and Powertools Metrics, so its cold start stays small; logs through the standard
library (the function's LoggingConfig writes JSON). Idempotent: a second run right after the first deletes nothing.
Metrics (metrics.py): deletions, failed deletions, completed and crashed runs (an alarm fires when no run completes).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from weasis_link.metrics import function_metrics, record_cleanup, record_cleanup_crash
from weasis_link.storage import ManifestStore, s3_client

logger = logging.getLogger("weasis_link.cleanup")
_level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO")  # set by the function's LoggingConfig; Lambda says WARN
logger.setLevel("WARNING" if _level == "WARN" else _level)

store = ManifestStore(
    s3_client(os.environ.get("AWS_REGION", "us-east-1"), os.environ.get("AWS_ENDPOINT_URL_S3") or None),
    os.environ["MANIFEST_BUCKET"],
    os.environ.get("MANIFEST_PREFIX", "manifests/"),
)
metrics = function_metrics()


@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(_event: dict[str, Any], _context: Any) -> dict[str, int]:
    try:
        result = store.delete_expired()
    except Exception:
        record_cleanup_crash(metrics)
        raise
    record_cleanup(metrics, result)
    report = dataclasses.asdict(result)
    logger.info("expired manifests deleted", extra=report)
    if report["failed"]:
        logger.warning("some expired manifests could not be deleted; the next run retries", extra=report)
    return report
