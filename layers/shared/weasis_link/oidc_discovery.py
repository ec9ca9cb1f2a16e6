"""OpenID Connect Discovery 1.0: an issuer's `jwks_uri` from `<issuer>/.well-known/openid-configuration`.

Fetched lazily, when the first token of that issuer arrives (never at cold start), then kept for the life of the
container. A failed fetch is not retried before the cooldown: a flood of tokens cannot hammer a provider that is
down. The document must name exactly the configured issuer (§4.3), and its `jwks_uri` passes the same URL checks
as a configured one. No redirect is followed, as for the JWKS itself.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Final

from weasis_link.errors import IdentityProviderUnavailable
from weasis_link.key_urls import checked_key_url

MAX_DOCUMENT_BYTES: Final = 512 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


class DiscoveryDocument:
    def __init__(self, url: str, issuer: str, *, timeout: float, cooldown: float) -> None:
        self.url = checked_key_url(url)
        self.issuer = issuer
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

    def _fetch(self) -> str:
        # https, or http on loopback only: checked_key_url in __init__.
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})  # noqa: S310
        try:
            with urllib.request.build_opener(_NoRedirect).open(request, timeout=self._timeout) as response:
                raw = response.read(MAX_DOCUMENT_BYTES + 1)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError):
            raise IdentityProviderUnavailable("The identity provider's discovery document cannot be fetched.") from None
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise IdentityProviderUnavailable("The identity provider's discovery document is too large.")
        try:
            document = json.loads(raw)
        except ValueError:
            document = None
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
