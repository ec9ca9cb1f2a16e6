"""The trusted issuers at run time: which one a token claims (by its unverified `iss`, before any signature work or
network call), and each one's signing keys (its JWKS, configured or discovered), cached per container.

An `iss` that names no trusted issuer is refused here, so a flood of tokens from unknown issuers costs nothing but
a JSON parse; each issuer has its own JWKS cache and refetch cooldown, so one issuer's unknown key ids cannot make
the service hammer another issuer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import urllib3
from jwt import PyJWK, PyJWKClient, PyJWKClientConnectionError, PyJWKClientError, PyJWTError

from weasis_link.errors import AuthenticationError, WeasisLinkError
from weasis_link.identity import TrustedIssuerConfig
from weasis_link.key_urls import KeyFetchError, fetch_json, key_pool
from weasis_link.oidc_discovery import DiscoveryDocument

KEYS_TIMEOUT_SECONDS: Final = 3  # well inside API Gateway's 29 s, and a dead IdP fails fast
MAX_KEY_SET_BYTES: Final = 512 * 1024  # a JWKS of a few keys is a few kB
# How long the first token waits for the key set being fetched at Init before fetching it itself.
PREFETCH_WAIT_SECONDS: Final = KEYS_TIMEOUT_SECONDS + 1


class KeySetClient(PyJWKClient):
    """PyJWKClient (its key-set cache and lifespan, the refetch cooldown for unknown key ids, its lock and errors)
    with the key set fetched by urllib3 (key_urls.fetch_json): no redirect, a size limit, and a TLS context only for
    an https URL. A failure is PyJWKClientConnectionError, as PyJWKClient's own fetch raises it."""

    def __init__(self, uri: str, http: urllib3.PoolManager, **options: Any) -> None:
        super().__init__(uri, **options)
        self._http = http

    def fetch_data(self) -> Any:
        try:
            data = fetch_json(self._http, self.uri, timeout=self.timeout, max_bytes=MAX_KEY_SET_BYTES)
        except KeyFetchError as exc:
            raise PyJWKClientConnectionError(f"The key set {exc}") from None
        if not isinstance(data, dict):
            raise PyJWKClientError("The JWKS endpoint did not return a JSON object")
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        self._last_successful_fetch = time.monotonic()
        return data


class IssuerKeys:
    """One issuer's signing keys. The JWKS client is made at the first token of this issuer, or ahead of it by
    `prefetch` (after discovery when no jwks-url is configured). cache_keys=False: a key removed from the JWKS stops
    working when the set is refreshed (after `lifespan`); at most one refetch per `cooldown` however many unknown key
    ids arrive."""

    def __init__(self, issuer: TrustedIssuerConfig, *, lifespan: float, cooldown: float, timeout: float) -> None:
        self._jwks_url = issuer.jwks_url
        self._lifespan, self._cooldown, self._timeout = lifespan, cooldown, timeout
        self._http = key_pool()  # the discovery document and the key set, often from one host
        self.discovery = (
            None
            if issuer.jwks_url is not None
            else DiscoveryDocument(
                issuer.discovery_url, issuer.issuer, timeout=timeout, cooldown=cooldown, http=self._http
            )
        )
        self._client: KeySetClient | None = None
        self._lock = threading.Lock()
        self._prefetch: threading.Thread | None = None

    def client(self) -> KeySetClient:
        with self._lock:
            if self._client is None:
                url = self._jwks_url or self._discovered()
                self._client = KeySetClient(
                    url,
                    self._http,
                    cache_jwk_set=True,
                    lifespan=self._lifespan,
                    cache_keys=False,
                    timeout=self._timeout,
                    cooldown_duration=self._cooldown,
                )
            return self._client

    def prefetch(self) -> None:
        """Fetches the key set (and the discovery document before it) on a daemon thread: at Init, its network wait
        overlaps the rest of Init instead of adding to the first request. A failure is forgotten: the first token
        fetches again."""
        self._prefetch = threading.Thread(target=self._fetch_quietly, name="jwks-prefetch", daemon=True)
        self._prefetch.start()

    def _fetch_quietly(self) -> None:
        try:
            self.client().get_jwk_set()
        except (PyJWTError, WeasisLinkError):
            # The first token tries again (and answers the failure): a provider down at Init may be back by then.
            if self.discovery is not None:
                self.discovery.forget_failure()

    def _discovered(self) -> str:
        if self.discovery is None:  # set whenever no jwks-url is configured
            raise RuntimeError("no JWKS URL and no discovery document")
        return self.discovery.jwks_uri()

    def settle_prefetch(self, timeout: float = PREFETCH_WAIT_SECONDS) -> None:
        """Waits for the prefetch, at most `timeout` seconds: a hung fetch times out anyway, and the first token
        then fetches itself."""
        prefetch = self._prefetch
        if prefetch is not None:
            prefetch.join(timeout)
            self._prefetch = None

    def signing_key(self, token: str) -> PyJWK:
        self.settle_prefetch()
        return self.client().get_signing_key_from_jwt(token)


@dataclass(frozen=True, slots=True)
class IssuerMatch:
    config: TrustedIssuerConfig
    keys: IssuerKeys
    tenant: str | None  # the tenant a `{tenantid}` issuer matched, from the token's `iss`


class TrustedIssuers:
    def __init__(
        self,
        issuers: Sequence[TrustedIssuerConfig],
        *,
        lifespan: float,
        cooldown: float,
        timeout: float = KEYS_TIMEOUT_SECONDS,
    ) -> None:
        self._entries = [(i, IssuerKeys(i, lifespan=lifespan, cooldown=cooldown, timeout=timeout)) for i in issuers]
        self._exact = {i.issuer: (i, k) for i, k in self._entries if not i.is_template}

    def prefetch(self) -> None:
        """Every issuer's key set fetched on a thread of its own (IssuerKeys.prefetch)."""
        for _, keys in self._entries:
            keys.prefetch()

    def settle_prefetch(self, timeout: float = PREFETCH_WAIT_SECONDS) -> None:
        """Waits for every prefetch, at most `timeout` seconds in all."""
        deadline = time.monotonic() + timeout
        for _, keys in self._entries:
            keys.settle_prefetch(max(0.0, deadline - time.monotonic()))

    def select(self, iss: object) -> IssuerMatch:
        """The trusted issuer a token claims; AuthenticationError (no network call) when it is none of them."""
        if not isinstance(iss, str):
            raise AuthenticationError("The token lacks the 'iss' claim.")
        exact = self._exact.get(iss)
        if exact is not None:
            return IssuerMatch(exact[0], exact[1], None)
        for config, keys in self._entries:
            tenant = config.tenant_in(iss)
            if tenant is not None:
                if tenant not in config.tenants:
                    raise AuthenticationError("The token comes from a tenant that is not trusted (tid).")
                return IssuerMatch(config, keys, tenant)
        raise AuthenticationError("The token comes from an issuer that is not trusted (iss).")
