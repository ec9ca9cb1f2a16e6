"""Reading an API Gateway (HTTP API v2) request: the raw query string, the bearer token, the API's own base URL,
the body, and what an upload is. Everything below this module receives plain values.

- The query string is parsed from `rawQueryString`: API Gateway's HTTP API joins repeated parameters with commas,
  which would split a PatientID that contains a comma into two patients.
- The token comes from `Authorization: Bearer` or, when allowed, `access_token=` (never both: RFC 6750 §2), and
  `access_token` is dropped from the parameters that travel further.
- The base URL is the configured PUBLIC_BASE_URL, else requestContext.domainName (not a client header).
- Bodies: API Gateway passes text bodies as strings and binary ones base64-encoded. Uploads are read by media type
  and Content-Encoding; the size limit applies to the document itself (after gunzip, read with that bound, so a
  gzip bomb stops there).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

from weasis_link.auth import MAX_TOKEN_LENGTH
from weasis_link.criteria import QueryCriteria, criteria_from_pairs
from weasis_link.errors import AuthenticationError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType

MAX_QUERY_STRING: Final = 16384
XML_MEDIA_TYPES: Final = frozenset({"application/xml", "text/xml"})
GZIP_MEDIA_TYPES: Final = frozenset({"application/gzip", "application/x-gzip"})
JSON_MEDIA_TYPE: Final = "application/json"
_BEARER: Final = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)
_JWS_COMPACT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_HOST: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?")
_STAGE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_LOOPBACK: Final = ("127.0.0.1", "localhost", "[::1]")


# --- query string ----------------------------------------------------------------------------------------------


def parse_query_string(raw: str) -> list[tuple[str, str]]:
    """Pairs in order, repeats kept (see the module's docstring for why we parse the raw string ourselves)."""
    if len(raw) > MAX_QUERY_STRING:
        raise InvalidRequest(f"The query string is longer than {MAX_QUERY_STRING} characters.")
    try:
        return parse_qsl(raw, keep_blank_values=True, strict_parsing=False, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("The query string is not valid UTF-8 once percent-decoded.") from exc


def criteria_from_query_string(raw: str, *, require_key: bool = True) -> QueryCriteria:
    return criteria_from_pairs(parse_query_string(raw), require_key=require_key)


def query_pairs_without_token(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request parameters minus access_token, so the token never travels further than authentication."""
    return [(k, v) for k, v in pairs if k != "access_token"]


# --- bearer token ----------------------------------------------------------------------------------------------


def extract_bearer_token(headers: Mapping[str, str], query_pairs: list[tuple[str, str]], *, allow_query: bool) -> str:
    """The token from `Authorization: Bearer` or, when allowed, `access_token=` (never both: RFC 6750 §2)."""
    header = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    query_tokens = [v for k, v in query_pairs if k == "access_token"]
    if header is not None and query_tokens:
        raise AuthenticationError(
            "Send the token in the Authorization header or in access_token, not both.", "invalid_request"
        )
    if len(query_tokens) > 1:
        raise AuthenticationError("access_token must be given once.", "invalid_request")
    if query_tokens:
        if not allow_query:
            raise AuthenticationError(
                "This service does not accept access_token in the query; use the Authorization header.",
                "invalid_request",
            )
        token = query_tokens[0].strip()
    elif header is not None:
        if len(header) > MAX_TOKEN_LENGTH + 7:
            raise AuthenticationError("The bearer token is too large.")
        scheme = header.strip().partition(" ")[0]
        if scheme.lower() != "bearer":
            # Another scheme (Basic...) is no bearer token at all: a bare challenge (RFC 6750 §3.1).
            raise AuthenticationError("A bearer token is required (Authorization: Bearer <token>).", None)
        m = _BEARER.fullmatch(header.strip())
        if m is None:
            raise AuthenticationError("The bearer token is malformed.")
        token = m[1]
    else:
        raise AuthenticationError("A bearer token is required.", None)
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationError("The bearer token is too large.")
    if not _JWS_COMPACT.fullmatch(token):
        raise AuthenticationError("The bearer token is not a signed JWT.")
    return token


# --- the API's own base URL ------------------------------------------------------------------------------------


def api_base_url(public_base_url: str | None, domain_name: str | None, stage: str | None) -> str:
    """The API's own base URL: the configured PUBLIC_BASE_URL (a custom domain), else the domain API Gateway was
    called on (requestContext.domainName, not a client header) and the stage when it is not `$default`."""
    if public_base_url:
        return public_base_url.rstrip("/")
    if not domain_name or not _HOST.fullmatch(domain_name):
        raise InvalidRequest("The request's host name cannot be used to build a manifest link.")
    host = domain_name.rsplit(":", 1)[0]
    # API Gateway is HTTPS only; plain HTTP exists only on the local stack.
    scheme = "http" if host in _LOOPBACK else "https"
    prefix = f"/{stage}" if stage and stage != "$default" and _STAGE.fullmatch(stage) else ""
    return f"{scheme}://{domain_name}{prefix}"


# --- body ------------------------------------------------------------------------------------------------------


def request_body(event: Mapping[str, Any]) -> bytes:
    """The request body as sent: API Gateway passes text bodies as strings and binary ones base64-encoded."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return str(body).encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The request body is not valid base64.") from None


@dataclass(frozen=True, slots=True)
class UploadedDocument:
    media_type: Literal["xml", "json"]
    content: bytes  # the XML document (gunzipped) or the JSON text


def read_upload(
    body: bytes, content_type: str | None, content_encoding: str | None, max_bytes: int
) -> UploadedDocument:
    """What was uploaded, by media type; the size limit applies to the document itself (after gunzip)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding} is not supported (use gzip or none).")
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"The upload is larger than {max_bytes} bytes.")
    if encoding == "gzip" or media_type in GZIP_MEDIA_TYPES:
        body = _gunzip(body, max_bytes)
        if media_type in GZIP_MEDIA_TYPES:
            media_type = "application/xml"
    if media_type in XML_MEDIA_TYPES:
        return UploadedDocument("xml", body)
    if media_type == JSON_MEDIA_TYPE:
        return UploadedDocument("json", body)
    raise UnsupportedMediaType(
        "Upload a Weasis manifest as application/xml (optionally gzipped) or a list of UIDs as application/json."
    )


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as gz:
            data = gz.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error):
        raise InvalidRequest("The upload is not valid gzip.") from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The uploaded manifest is larger than {max_bytes} bytes once decompressed.")
    return data
