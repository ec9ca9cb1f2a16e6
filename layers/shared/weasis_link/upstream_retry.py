"""The retry policy of every HTTP request to an upstream server (a PACS's QIDO-RS, a token endpoint): connection
errors and a gateway's 502/503/504 are retried, a Retry-After is never waited on (one of minutes must not hold the
API), and the last answer is handed back rather than raised (the caller says what the status means).

Also the TLS context our urllib3 pools share (`tls_context`): urllib3 builds a context and loads the system's CA
certificates for every new https connection it opens unless it is given one (about 30 ms each at cold start).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, TypeVar

from urllib3.util import Retry
from urllib3.util.ssl_ import create_urllib3_context

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


@functools.cache
def tls_context() -> ssl.SSLContext:
    """urllib3's own default context (certificates and host names verified against the system's CA store), made
    once, at the first https request that needs it. Never for a pool with its own CA file: urllib3 loads that file
    into the context it is given."""
    context = create_urllib3_context()
    context.load_default_certs()
    return context


def tls_options(url: str, ca_file: str | None = None) -> dict[str, Any]:
    """The TLS options of a urllib3 PoolManager for `url`: its own CA file when one is configured, else the shared
    context for an https URL (nothing for plain http: no CA store is loaded)."""
    if ca_file:
        return {"ca_certs": ca_file}
    return {"ssl_context": tls_context()} if url.lower().startswith("https:") else {}
