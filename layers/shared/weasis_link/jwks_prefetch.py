"""The identity provider's JWKS fetched on a thread while the function builds its runtime.

Every request needs the key set, and a cold start's first request would otherwise fetch it only after init, on
the request path; started at the beginning of init, the fetch's network wait overlaps the configuration, S3
client and route set-up. It fills the same client the token validator uses (weasis_link.auth.jwks_client).
A failed fetch is left to the first request, which fetches again and reports the failure as usual."""

from __future__ import annotations

import contextlib
import threading

import jwt

from weasis_link.auth import JWKS_TIMEOUT_SECONDS, jwks_client
from weasis_link.settings import ServiceSettings


class JwksPrefetch:
    def __init__(self, settings: ServiceSettings) -> None:
        self._client = jwks_client(
            settings.oauth_jwks_url, settings.oauth_jwks_cache_seconds, settings.oauth_jwks_cooldown_seconds
        )
        self._thread = threading.Thread(target=self._fetch, name="jwks-prefetch", daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        # Unreachable or unusable now: the first request fetches again and reports it.
        with contextlib.suppress(jwt.PyJWTError):
            self._client.get_jwk_set()

    def wait(self) -> None:
        """Init ends with the fetch (bounded by the JWKS timeout): no thread outlives init, or a SnapStart snapshot."""
        self._thread.join(JWKS_TIMEOUT_SECONDS)
