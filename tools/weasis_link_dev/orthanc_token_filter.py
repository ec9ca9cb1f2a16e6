"""Orthanc incoming-HTTP-request filter: only requests with a valid ``Authorization: Bearer <JWT>`` get through.

Runs inside Orthanc's embedded interpreter (orthanc-python 4.0 on Debian 12: Python 3.11, Debian's python3-jwt 2.6
and python3-cryptography), not in the project venv: keep it to the standard library + PyJWT 2.6 APIs.

Configured from the ``WeasisLinkTokenFilter`` section of Orthanc's own configuration file:
``JwksUrl``, ``Issuer``, ``Audience``, ``Algorithms`` (list), ``LeewaySeconds``, ``HarnessKey``.
A request carrying header ``X-Weasis-Link-Harness: <HarnessKey>`` also passes: the test harness uses it to upload and
read ground truth without an identity provider. The key is random per server process.

Orthanc 1.10 answers a refused request with ``403 Forbidden`` (empty body, no ``WWW-Authenticate``): a filter can only
say yes or no, and an exception raised here becomes a 500, so 401 cannot be produced from a filter on this version.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
import urllib.request
from typing import Any

import jwt
import orthanc  # type: ignore[import-not-found]  # built into the plugin's interpreter

HARNESS_HEADER = "x-weasis-link-harness"  # Orthanc hands headers over in lower case
_JWKS_MAX_AGE = 300.0
_UNKNOWN_KID_COOLDOWN = 10.0  # an unknown kid refetches the JWKS at most this often (no refetch storms)

_config: dict[str, Any] = json.loads(orthanc.GetConfiguration()).get("WeasisLinkTokenFilter", {})
_jwks_url: str = _config["JwksUrl"]
_issuer: str = _config["Issuer"]
_audience: str = _config["Audience"]
_algorithms: list[str] = list(_config.get("Algorithms", ["RS256"]))
_leeway: float = float(_config.get("LeewaySeconds", 0))
_harness_key: str = _config.get("HarnessKey", "")


class _KeyCache:
    """The JWKS by kid, refreshed after ``_JWKS_MAX_AGE`` or (rate-limited) when a token names an unknown kid."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # Orthanc calls the filter from several HTTP threads
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0

    def _fetch(self) -> None:
        with urllib.request.urlopen(_jwks_url, timeout=5) as response:
            document = json.loads(response.read().decode("utf-8"))
        keys: dict[str, Any] = {}
        for jwk in document.get("keys", []):
            if jwk.get("use", "sig") == "sig" and "kid" in jwk:
                keys[jwk["kid"]] = jwt.PyJWK(jwk).key
        self._keys = keys
        self._fetched_at = time.monotonic()

    def get(self, kid: str) -> Any:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > _JWKS_MAX_AGE or (kid not in self._keys and age > _UNKNOWN_KID_COOLDOWN):
                try:
                    self._fetch()
                except Exception as error:  # an unreachable IdP refuses tokens, it must not crash Orthanc
                    orthanc.LogWarning(f"token filter: JWKS fetch failed: {error!r}")
            return self._keys.get(kid)


_key_cache = _KeyCache()


def _token_is_valid(token: str) -> bool:
    try:
        header = jwt.get_unverified_header(token)
        key = _key_cache.get(str(header.get("kid", "")))
        if key is None:
            orthanc.LogWarning("token filter: refused, unknown kid")
            return False
        jwt.decode(
            token,
            key,
            algorithms=_algorithms,
            audience=_audience,
            issuer=_issuer,
            leeway=_leeway,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.PyJWTError as error:
        orthanc.LogWarning(f"token filter: refused, {type(error).__name__}: {error}")
        return False
    return True


def _filter(uri: str, **request: Any) -> bool:  # noqa: ARG001  # the signature Orthanc calls
    headers: dict[str, str] = request.get("headers", {})
    presented = headers.get(HARNESS_HEADER)
    if presented and _harness_key and hmac.compare_digest(presented, _harness_key):
        return True
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return _token_is_valid(token.strip())


orthanc.RegisterIncomingHttpRequestFilter(_filter)
orthanc.LogWarning(f"token filter: bearer tokens required (issuer {_issuer}, audience {_audience}, JWKS {_jwks_url})")
