"""Bearer token extraction (RFC 6750) and JWT validation against a JWKS served on 127.0.0.1."""

from __future__ import annotations

import pytest

from weasis_link.auth import TokenValidator
from weasis_link.errors import AuthenticationError, IdentityProviderUnavailable, InsufficientScope
from weasis_link.http.requests import extract_bearer_token
from weasis_link.settings import ServiceSettings
from weasis_link_dev.dev_keys import JwksServer, SigningKey, access_token_claims


@pytest.fixture
def validator(service_env: dict[str, str], jwks_server: JwksServer) -> TokenValidator:
    settings = ServiceSettings.from_environment(service_env | {"OAUTH_JWKS_COOLDOWN_SECONDS": "0"})
    return TokenValidator(settings)


def test_valid_token_gives_the_caller(validator: TokenValidator, signing_key: SigningKey) -> None:
    token = signing_key.sign(access_token_claims(subject="alice"))
    caller = validator.validate(token)
    assert caller.subject == "alice" and "weasis.launch" in caller.scopes
    assert token not in repr(caller)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"lifetime": -120}, "expired"),
        ({"audience": "someone-else"}, "not meant for this service"),
        ({"issuer": "https://evil.example"}, "issuer that is not trusted"),
        ({"nbf": 9_999_999_999}, "not valid yet"),
        ({"typ": "ID"}, "not an access token"),
        ({"token_use": "id"}, "not an access token"),
    ],
)
def test_invalid_claims_are_refused(
    validator: TokenValidator, signing_key: SigningKey, claims: dict[str, object], message: str
) -> None:
    token = signing_key.sign(access_token_claims(**claims))
    with pytest.raises(AuthenticationError, match=message) as err:
        validator.validate(token)
    assert err.value.oauth_error == "invalid_token"


def test_missing_scope_is_403(validator: TokenValidator, signing_key: SigningKey) -> None:
    with pytest.raises(InsufficientScope):
        validator.validate(signing_key.sign(access_token_claims(scope="openid profile")))


def test_scp_list_claim_is_read(validator: TokenValidator, signing_key: SigningKey) -> None:
    claims = access_token_claims(scope="") | {"scp": ["weasis.launch"]}
    assert "weasis.launch" in validator.validate(signing_key.sign(claims)).scopes


def test_token_from_another_key_is_refused(validator: TokenValidator) -> None:
    stranger = SigningKey.generate("test-key-1")  # same kid, other key: the signature fails
    with pytest.raises(AuthenticationError, match="signature or claims"):
        validator.validate(stranger.sign(access_token_claims()))


def test_jwks_down_is_identity_provider_unavailable(service_env: dict[str, str], signing_key: SigningKey) -> None:
    dead = JwksServer([signing_key]).start()
    url = dead.url
    dead.stop()
    validator = TokenValidator(ServiceSettings.from_environment(service_env | {"OAUTH_JWKS_URL": url}))
    with pytest.raises(IdentityProviderUnavailable):
        validator.validate(signing_key.sign(access_token_claims()))


@pytest.mark.parametrize(
    ("headers", "query", "status_error"),
    [
        ({}, [], None),
        ({"authorization": "Basic dTpw"}, [], None),
        ({"authorization": "Bearer "}, [], "invalid_token"),
        ({"authorization": "Bearer a.b.c"}, [("access_token", "a.b.c")], "invalid_request"),
        ({}, [("access_token", "a.b.c"), ("access_token", "d.e.f")], "invalid_request"),
        ({"authorization": "Bearer not-a-jwt"}, [], "invalid_token"),
        ({"authorization": "Bearer " + "a" * 9000 + ".b.c"}, [], "invalid_token"),
    ],
)
def test_extraction_errors(headers: dict[str, str], query: list[tuple[str, str]], status_error: str | None) -> None:
    with pytest.raises(AuthenticationError) as err:
        extract_bearer_token(headers, query, allow_query=True)
    assert err.value.oauth_error == status_error


def test_extraction_from_header_or_query() -> None:
    assert extract_bearer_token({"Authorization": "bearer a.b.c"}, [], allow_query=False) == "a.b.c"
    assert extract_bearer_token({}, [("access_token", "a.b.c")], allow_query=True) == "a.b.c"
    with pytest.raises(AuthenticationError, match="does not accept access_token"):
        extract_bearer_token({}, [("access_token", "a.b.c")], allow_query=False)
