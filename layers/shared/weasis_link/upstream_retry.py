"""The retry policy of every HTTP request to an upstream server (a PACS's QIDO-RS, a token endpoint): connection
errors and a gateway's 502/503/504 are retried, a Retry-After is never waited on (one of minutes must not hold the
API), and the last answer is handed back rather than raised (the caller says what the status means)."""

from __future__ import annotations

from typing import Any, TypeVar

from urllib3.util import Retry

R = TypeVar("R", bound=Retry)


def gateway_retry(kind: type[R], method: str, total: int, backoff_factor: float, **limits: Any) -> R:
    """A `kind` (urllib3's Retry or a subclass) for `method` requests, at most `total` retries; `limits` are the
    other Retry counts (connect, read, status, other, backoff_max)."""
    return kind(
        total=total,
        backoff_factor=backoff_factor,
        status_forcelist=(502, 503, 504),
        allowed_methods=frozenset({method}),
        raise_on_status=False,
        respect_retry_after_header=False,
        **limits,
    )
