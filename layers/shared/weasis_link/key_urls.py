"""Which URLs signing keys and discovery documents may be fetched from: https, or plain http on the loopback
interface only (a test provider on 127.0.0.1). The host is parsed, never prefix-matched: a JWKS fetched over plain
HTTP from `localhost.attacker.example` would let anyone on the path mint accepted tokens.

And how they are fetched (`fetch_json`): with urllib3, which botocore has already imported, over the TLS context our
pools share (upstream_retry.tls_options), made only for an https URL; urllib.request (PyJWT's own fetch) would load
the CA store for every fetch, even of a plain-http URL.
"""

from __future__ import annotations

import json
from typing import Final, Literal
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError

from weasis_link.upstream_retry import tls_options

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_HEADERS: Final = {"Accept": "application/json", "User-Agent": "weasis-link"}


class KeyFetchError(Exception):
    """A key URL gave no JSON document. `reason`: unreachable (transport, or a status other than 200), too-large,
    not-json; the message says why, without the URL or the body."""

    def __init__(self, reason: Literal["unreachable", "too-large", "not-json"], message: str) -> None:
        super().__init__(message)
        self.reason = reason


def checked_key_url(url: str) -> str:
    """`url` when keys may be fetched from it; ValueError saying why not (the message names no secret)."""
    if any(c.isspace() for c in url) or any(ord(c) < 0x20 for c in url):
        raise ValueError("must be a URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError("must be a valid URL") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ValueError("must use https (plain http is accepted only on 127.0.0.1, ::1 or localhost)")
    return url


def key_pool() -> urllib3.PoolManager:
    """The pools of one issuer's key and discovery fetches (a key set is small and fetched rarely)."""
    return urllib3.PoolManager(num_pools=2, maxsize=1, headers=_HEADERS)


def fetch_json(http: urllib3.PoolManager, url: str, *, timeout: float, max_bytes: int) -> object:
    """The JSON document at `url` (a checked key URL): one GET, no retry, no redirect followed, at most `max_bytes`
    read. KeyFetchError on a transport failure, a status other than 200, a larger body or one that is not JSON."""
    try:
        pool = http.connection_from_url(url, pool_kwargs=tls_options(url))
        response = pool.urlopen(
            "GET",
            url,
            headers=http.headers,
            retries=False,
            redirect=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            preload_content=False,
        )
        raw, complete = b"", False
        try:
            status = response.status
            raw = response.read(max_bytes + 1)
            complete = len(raw) <= max_bytes
        finally:
            if not complete:
                response.close()  # something left unread: the connection cannot carry another request
            response.release_conn()
    except (HTTPError, OSError, ValueError) as exc:
        raise KeyFetchError("unreachable", f"cannot be fetched ({type(exc).__name__})") from None
    if status != 200:
        raise KeyFetchError("unreachable", f"cannot be fetched (HTTP {status})")
    if len(raw) > max_bytes:
        raise KeyFetchError("too-large", "is too large")
    try:
        return json.loads(raw)
    except ValueError:
        raise KeyFetchError("not-json", "is not JSON") from None
