"""OpenID Connect Discovery 1.0: an issuer's `jwks_uri` from `<issuer>/.well-known/openid-configuration`.

Fetched on a thread at Init (IssuerKeys.prefetch, with the key set), or when the first token of that issuer
arrives, then kept for the life of the container. A failed fetch is not retried before the cooldown: a flood of
tokens cannot hammer a provider that is down. The document must name exactly the configured issuer (§4.3), and its
`jwks_uri` passes the same URL checks as a configured one. No redirect is followed, as for the JWKS itself.
"""

from __future__ import annotations

import threading
import time
from typing import Final

import urllib3

from weasis_link.errors import IdentityProviderUnavailable
from weasis_link.key_urls import KeyFetchError, checked_key_url, fetch_json, key_pool

MAX_DOCUMENT_BYTES: Final = 512 * 1024


class DiscoveryDocument:
    def __init__(
        self, url: str, issuer: str, *, timeout: float, cooldown: float, http: urllib3.PoolManager | None = None
    ) -> None:
        self.url = checked_key_url(url)
        self.issuer = issuer
        self._http = http or key_pool()
        self._timeout = timeout
        self._cooldown = cooldown
        self._jwks_uri: str | None = None
        self._failed_at: float | None = None
        self._failure = ""
        self._lock = threading.Lock()

    def jwks_uri(self) -> str:
        """The issuer's JWKS URL; IdentityProviderUnavailable while the document cannot be had."""
        with self._lock:
            if self._jwks_uri is not None:
                return self._jwks_uri
            if self._failed_at is not None and time.monotonic() - self._failed_at < self._cooldown:
                raise IdentityProviderUnavailable(self._failure)
            try:
                self._jwks_uri = self._fetch()
            except IdentityProviderUnavailable as exc:
                self._failed_at, self._failure = time.monotonic(), exc.detail
                raise
            return self._jwks_uri

    def forget_failure(self) -> None:
        """The next `jwks_uri` fetches again, cooldown or not (a failure of the prefetch at Init is not the
        caller's)."""
        with self._lock:
            self._failed_at = None

    def _fetch(self) -> str:
        # https, or http on loopback only: checked_key_url in __init__.
        try:
            document = fetch_json(self._http, self.url, timeout=self._timeout, max_bytes=MAX_DOCUMENT_BYTES)
        except KeyFetchError as exc:
            if exc.reason != "not-json":
                why = "is too large" if exc.reason == "too-large" else "cannot be fetched"
                raise IdentityProviderUnavailable(f"The identity provider's discovery document {why}.") from None
            document = None  # not JSON: refused below, as any document that is not an object
        if not isinstance(document, dict):
            raise IdentityProviderUnavailable("The identity provider's discovery document is not a JSON object.")
        if document.get("issuer") != self.issuer:
            raise IdentityProviderUnavailable(
                "The identity provider's discovery document names another issuer than the configured one."
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IdentityProviderUnavailable("The identity provider's discovery document has no jwks_uri.")
        try:
            return checked_key_url(jwks_uri)
        except ValueError:
            raise IdentityProviderUnavailable(
                "The identity provider's discovery document gives a jwks_uri that is not https."
            ) from None
