"""Which URLs signing keys and discovery documents may be fetched from: https, or plain http on the loopback
interface only (a test provider on 127.0.0.1). The host is parsed, never prefix-matched: a JWKS fetched over plain
HTTP from `localhost.attacker.example` would let anyone on the path mint accepted tokens."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})


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
