"""The trusted issuers at run time: which one a token claims (by its unverified `iss`, before any signature work or
network call), and each one's signing keys (its JWKS, configured or discovered), cached per container.

An `iss` that names no trusted issuer is refused here, so a flood of tokens from unknown issuers costs nothing but
a JSON parse; each issuer has its own JWKS cache and refetch cooldown, so one issuer's unknown key ids cannot make
the service hammer another issuer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from jwt import PyJWK, PyJWKClient

from weasis_link.errors import AuthenticationError
from weasis_link.identity import TrustedIssuerConfig
from weasis_link.oidc_discovery import DiscoveryDocument

KEYS_TIMEOUT_SECONDS: Final = 3  # well inside API Gateway's 29 s, and a dead IdP fails fast


class IssuerKeys:
    """One issuer's signing keys. The JWKS client is made at the first token of this issuer (after discovery when
    no jwks-url is configured). cache_keys=False: a key removed from the JWKS stops working when the set is
    refreshed (after `lifespan`); at most one refetch per `cooldown` however many unknown key ids arrive."""

    def __init__(self, issuer: TrustedIssuerConfig, *, lifespan: float, cooldown: float, timeout: float) -> None:
        self._jwks_url = issuer.jwks_url
        self._lifespan, self._cooldown, self._timeout = lifespan, cooldown, timeout
        self.discovery = (
            None
            if issuer.jwks_url is not None
            else DiscoveryDocument(issuer.discovery_url, issuer.issuer, timeout=timeout, cooldown=cooldown)
        )
        self._client: PyJWKClient | None = None
        self._lock = threading.Lock()

    def client(self) -> PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self._jwks_url or self._discovered()
                self._client = PyJWKClient(
                    url,
                    cache_jwk_set=True,
                    lifespan=self._lifespan,
                    cache_keys=False,
                    timeout=self._timeout,
                    cooldown_duration=self._cooldown,
                )
            return self._client

    def _discovered(self) -> str:
        if self.discovery is None:  # set whenever no jwks-url is configured
            raise RuntimeError("no JWKS URL and no discovery document")
        return self.discovery.jwks_uri()

    def signing_key(self, token: str) -> PyJWK:
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
