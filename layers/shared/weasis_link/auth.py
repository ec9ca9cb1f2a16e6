"""OAuth2 bearer tokens: JWT validation with PyJWT against the issuer's JWKS (the token is taken from the request
by weasis_link.http.requests, RFC 6750).

Checked, per trusted issuer (weasis_link.identity; chosen by `iss` before any signature work): signature (key from
that issuer's JWKS by `kid`), its list of asymmetric algorithms, `iss`, `aud` (when audiences are configured), `exp`,
`nbf`, `iat` (not in the future), the presence of `exp`/`iat`/`iss`/`sub`, that it is an access token and not an ID
token (RFC 9068 `typ` when required), the client (`client_id`/`azp`/`appid`/`cid`), the Entra ID tenant (`tid`) and
the required scopes. The token itself never reaches a log line or an error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt

from weasis_link.errors import AuthenticationError, IdentityProviderUnavailable, InsufficientScope
from weasis_link.identity import CLIENT_CLAIMS, AuthConfig, TrustedIssuerConfig, trusted_issuers
from weasis_link.issuer_keys import PREFETCH_WAIT_SECONDS, TrustedIssuers
from weasis_link.settings import ServiceSettings

MAX_TOKEN_LENGTH: Final = 8192
# Header `typ` values that say "ID token" or anything but a JWT access token (RFC 9068 uses at+jwt).
_ACCEPTED_HEADER_TYPES: Final = frozenset({"jwt", "at+jwt", "application/at+jwt", "application/jwt"})
# What an issuer with require-access-token-type accepts: RFC 9068 §2.1 only.
_ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
# PyJWT's claim errors -> what the caller reads (none is a subclass of another); anything else: _INVALID_CLAIMS.
_CLAIM_ERRORS: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "The token has expired."),
    (jwt.ImmatureSignatureError, "The token is not valid yet (nbf or iat in the future)."),
    (jwt.InvalidAudienceError, "The token is not meant for this service (aud)."),
    (jwt.InvalidIssuerError, "The token comes from another issuer (iss)."),
)
_INVALID_CLAIMS: Final = "The token's signature or claims are invalid."


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller. `token` is kept only to inject it into the manifest; never log it."""

    token: str
    subject: str
    scopes: frozenset[str]
    expires_at: int
    claims: Mapping[str, Any]
    trusted_issuer: TrustedIssuerConfig | None = None  # the `auth.issuers` entry (or OAUTH_*) that accepted it

    def __repr__(self) -> str:  # keep the token out of any accidental repr/log
        return f"Caller(subject={self.subject!r}, scopes={sorted(self.scopes)!r}, expires_at={self.expires_at})"


class TokenValidator:
    """Validates bearer tokens against the trusted issuers (weasis_link.identity): the `OAUTH_*` settings and the
    configuration file's `auth.issuers`. The issuer is chosen by the token's `iss` before any signature work."""

    def __init__(self, settings: ServiceSettings, auth: AuthConfig | None = None) -> None:
        self._leeway = settings.oauth_leeway_seconds
        self._issuers = TrustedIssuers(
            trusted_issuers(settings, auth),
            lifespan=settings.oauth_jwks_cache_seconds,
            cooldown=settings.oauth_jwks_cooldown_seconds,
        )

    def prefetch_keys(self) -> None:
        """Each trusted issuer's key set fetched on a thread at Init, ahead of the first token (IssuerKeys.prefetch)."""
        self._issuers.prefetch()

    def settle_prefetch(self, timeout: float = PREFETCH_WAIT_SECONDS) -> None:
        """At the end of Init, the prefetches waited for (bounded): Lambda may freeze the environment as soon as
        Init returns (provisioned concurrency: for hours), and a fetch frozen mid-flight would hold the first token
        up to its timeout. The first request would have waited for the keys anyway."""
        self._issuers.settle_prefetch(timeout)

    def validate(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationError("The bearer token is not a valid JWT.") from None
        match = self._issuers.select(unverified.get("iss"))  # unknown issuer: refused, no network call
        issuer = match.config
        alg = header.get("alg")
        if alg not in issuer.algorithms:
            raise AuthenticationError("The token's signing algorithm is not accepted.")
        typ = header.get("typ")
        accepted_types = _ACCESS_TOKEN_TYPES if issuer.require_access_token_type else _ACCEPTED_HEADER_TYPES
        if (typ is None and issuer.require_access_token_type) or (
            typ is not None and str(typ).lower() not in accepted_types
        ):
            raise AuthenticationError("The token is not an access token.")
        if not isinstance(header.get("kid"), str):
            raise AuthenticationError("The token has no key id (kid).")
        try:
            signing_key = match.keys.signing_key(token)
        except jwt.PyJWKClientConnectionError:
            raise IdentityProviderUnavailable("The identity provider's signing keys cannot be fetched.") from None
        except jwt.PyJWKClientError:
            raise AuthenticationError("The token was not signed by a key of the issuer.") from None
        except jwt.PyJWTError:
            raise AuthenticationError("The bearer token is not a valid JWT.") from None
        required = ["exp", "iat", "iss", "sub", *(["aud"] if issuer.audiences else [])]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=list(issuer.algorithms),
                audience=list(issuer.audiences) or None,
                issuer=unverified["iss"],  # the trusted issuer's exact iss, or its {tenantid} template filled in
                leeway=self._leeway,
                # No audiences configured (Cognito access tokens carry none): the client-ids check stands instead.
                options={"require": required, "verify_iat": True, "verify_aud": bool(issuer.audiences)},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"The token lacks the '{exc.claim}' claim.") from None
        except jwt.PyJWTError as exc:
            detail = next((m for cls, m in _CLAIM_ERRORS if isinstance(exc, cls)), _INVALID_CLAIMS)
            raise AuthenticationError(detail) from None
        _refuse_id_tokens(claims)
        _check_issuer_rules(issuer, match.tenant, claims)
        scopes = _scopes(claims, roles=issuer.roles_as_scopes)
        missing = [s for s in issuer.required_scopes if s not in scopes]
        if missing:
            raise InsufficientScope(f"The token lacks the scope {' '.join(missing)}.", tuple(issuer.required_scopes))
        return Caller(
            token=token,
            subject=str(claims["sub"]),
            scopes=scopes,
            expires_at=int(claims["exp"]),
            claims=claims,
            trusted_issuer=issuer,
        )


def _check_issuer_rules(issuer: TrustedIssuerConfig, tenant: str | None, claims: Mapping[str, Any]) -> None:
    """What the issuer's entry asks beyond the standard claims: token_use, the client, the tenant."""
    if issuer.token_use is not None and claims.get("token_use") != issuer.token_use:
        raise AuthenticationError("The token is not an access token (token_use).")
    if issuer.client_ids:
        clients = [claims[name] for name in CLIENT_CLAIMS if name in claims]
        if not clients:
            raise AuthenticationError("The token names no client (client_id, azp, appid or cid).")
        # Every claim that names a client must name an allowed one: a token cannot pass by one and hide another.
        if any(not isinstance(c, str) or c not in issuer.client_ids for c in clients):
            raise AuthenticationError("The token was issued to a client this service does not accept.")
    if issuer.tenants:
        tid = claims.get("tid")
        if not isinstance(tid, str) or tid.lower() not in issuer.tenants:
            raise AuthenticationError("The token comes from a tenant that is not trusted (tid).")
        if tenant is not None and tid.lower() != tenant:
            raise AuthenticationError("The token's tenant (tid) is not the one of its issuer (iss).")


def _refuse_id_tokens(claims: Mapping[str, Any]) -> None:
    """ID tokens prove a login to a client; they are not credentials for an API (OIDC Core §2, RFC 9068)."""
    token_use = claims.get("token_use")  # Amazon Cognito
    typ = claims.get("typ")  # Keycloak: "Bearer" for access tokens, "ID" for ID tokens
    if (token_use is not None and token_use != "access") or (  # noqa: S105 - claim values, not secrets
        typ is not None and str(typ).lower() != "bearer"
    ):
        raise AuthenticationError("The token is not an access token.")
    if "nonce" in claims and "scope" not in claims and "scp" not in claims:
        raise AuthenticationError("The token is not an access token.")


def _scopes(claims: Mapping[str, Any], *, roles: bool = False) -> frozenset[str]:
    """`scope` (RFC 8693, space-separated), `scp` (Entra ID: a string; Okta: a list) and, when the issuer says so,
    `roles` (Entra ID application permissions of app-only tokens)."""
    found: set[str] = set()
    for name in ("scope", "scp", *(("roles",) if roles else ())):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(str(v) for v in value)
    return frozenset(found)
