"""PUBLIC_BASE_URL, checked at cold start with the rules of the links it will produce.

Every launch puts `<PUBLIC_BASE_URL>/manifests/{id}` into a weasis:// URI; a value the launcher cannot carry (a quote,
a backslash, `<`, `{`...) would make every launch fail with a 500, and a query, fragment or userinfo would yield odd
links. So the value must be an https URL (plain http only on loopback, for the local stack) made of the characters
the launch URI accepts, with no userinfo, query or fragment; a bad value fails the cold start, naming the variable.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from weasis_link.launch_uri import weasis_uri

_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "[::1]"})
_HOST: Final = re.compile(r"(\[::1\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))(?::[0-9]{1,5})?")
_PATH: Final = re.compile(r"(/[A-Za-z0-9._~!&()*+,;=:@%-]*)*")
_SAMPLE_ID: Final = "1700000000-" + "A" * 32


def check_public_base_url(value: str) -> str:
    """The base URL without its trailing slash; ValueError saying what is wrong."""
    if re.search(r"[\s\x00-\x1f\x7f]", value):
        raise ValueError("must not contain spaces or control characters")
    if "?" in value or "#" in value:
        raise ValueError("must not have a query or a fragment")
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise ValueError("must not carry userinfo (user:password@)")
    if not _HOST.fullmatch(parts.netloc):
        raise ValueError("must have a host name (letters, digits, dots, hyphens) and an optional port")
    host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.startswith("[") else parts.netloc.split("]")[0] + "]"
    if parts.scheme != "https" and not (parts.scheme == "http" and host in _LOOPBACK):
        raise ValueError("must be an https URL (plain http only on 127.0.0.1/localhost)")
    if not _PATH.fullmatch(parts.path):
        raise ValueError("has a path with characters a weasis:// launch URI cannot carry (quotes, <, {, \\...)")
    base = value.rstrip("/")
    try:
        weasis_uri(f"{base}/manifests/{_SAMPLE_ID}")
    except ValueError:
        raise ValueError("yields manifest links a weasis:// launch URI cannot carry") from None
    return base
