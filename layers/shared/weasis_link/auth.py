"""OAuth2 bearer tokens: JWT validation with PyJWT against the issuer's JWKS (the token is taken from the request
by weasis_link.http.requests, RFC 6750).

Checked: signature (key from the JWKS by `kid`), an explicit list of asymmetric algorithms, `iss`, `aud`, `exp`,
`nbf`, `iat` (not in the future), the presence of `exp`/`iat`/`iss`/`aud`/`sub`, that it is an access token and not
an ID token, and the required scopes. The token itself never reaches a log line or an error message.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from jwt import PyJWKClient

from weasis_link.errors import AuthenticationError, IdentityProviderUnavailable, InsufficientScope
from weasis_link.settings import ServiceSettings

MAX_TOKEN_LENGTH: Final = 8192
JWKS_TIMEOUT_SECONDS: Final = 3  # well inside API Gateway's 29 s, and a dead IdP fails fast
# Header `typ` values that say "ID token" or anything but a JWT access token (RFC 9068 uses at+jwt).
_ACCEPTED_HEADER_TYPES: Final = frozenset({"jwt", "at+jwt", "application/at+jwt", "application/jwt"})


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller. `token` is kept only to inject it into the manifest; never log it."""

    token: str
    subject: str
    scopes: frozenset[str]
    expires_at: int
    claims: Mapping[str, Any]

    def __repr__(self) -> str:  # keep the token out of any accidental repr/log
        return f"Caller(subject={self.subject!r}, scopes={sorted(self.scopes)!r}, expires_at={self.expires_at})"


@functools.cache
def jwks_client(url: str, lifespan: int = 300, cooldown: int = 30) -> PyJWKClient:
    """One client per JWKS URL for the life of the container, so warm invocations reuse the fetched key set.
    cache_keys=False: a key removed from the JWKS stops working when the set is refreshed (after `lifespan`);
    at most one refetch per `cooldown` however many unknown key ids arrive."""
    return PyJWKClient(
        url,
        cache_jwk_set=True,
        lifespan=lifespan,
        cache_keys=False,
        timeout=JWKS_TIMEOUT_SECONDS,
        cooldown_duration=cooldown,
    )


class TokenValidator:
    def __init__(self, settings: ServiceSettings, client: PyJWKClient | None = None) -> None:
        self._issuer = settings.oauth_issuer
        self._audiences = list(settings.oauth_audiences)
        self._algorithms = list(settings.oauth_algorithms)
        self._leeway = settings.oauth_leeway_seconds
        self._required_scopes = tuple(settings.oauth_required_scopes)
        self._client = client or jwks_client(
            settings.oauth_jwks_url, settings.oauth_jwks_cache_seconds, settings.oauth_jwks_cooldown_seconds
        )

    def validate(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("The bearer token is not a valid JWT.") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise AuthenticationError("The token's signing algorithm is not accepted.")
        typ = header.get("typ")
        if typ is not None and str(typ).lower() not in _ACCEPTED_HEADER_TYPES:
            raise AuthenticationError("The token is not an access token.")
        if not isinstance(header.get("kid"), str):
            raise AuthenticationError("The token has no key id (kid).")
        try:
            signing_key = self._client.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise IdentityProviderUnavailable("The identity provider's signing keys cannot be fetched.") from None
        except jwt.PyJWKClientError:
            raise AuthenticationError("The token was not signed by a key of the issuer.") from None
        except jwt.PyJWTError:
            raise AuthenticationError("The bearer token is not a valid JWT.") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=self._algorithms,
                audience=self._audiences,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_iat": True},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("The token is not valid yet (nbf or iat in the future).") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("The token is not meant for this service (aud).") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("The token comes from another issuer (iss).") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"The token lacks the '{exc.claim}' claim.") from None
        except jwt.PyJWTError:
            raise AuthenticationError("The token's signature or claims are invalid.") from None
        _refuse_id_tokens(claims)
        scopes = _scopes(claims)
        missing = [s for s in self._required_scopes if s not in scopes]
        if missing:
            raise InsufficientScope(f"The token lacks the scope {' '.join(missing)}.", self._required_scopes)
        return Caller(
            token=token,
            subject=str(claims["sub"]),
            scopes=scopes,
            expires_at=int(claims["exp"]),
            claims=claims,
        )


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


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(str(v) for v in value)
    return frozenset(found)
