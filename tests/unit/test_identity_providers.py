"""The recipes of docs/identity-providers.md against tokens shaped like each provider's (Cognito, Entra ID v1/v2
delegated and app-only and multi-tenant, Keycloak default / service account / audience mapper, Auth0, Okta custom
authorization server, a generic RFC 9068 provider), signed by a key served from a local JWKS.

Each shape is accepted under its recipe and refused under every other recipe, both as documented (another issuer)
and with the other recipe's rules applied to this shape's issuer (so the refusal comes from the claim rules, not
only from `iss`)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from weasis_link.auth import Caller, TokenValidator
from weasis_link.errors import AuthenticationError, InsufficientScope
from weasis_link.identity import AuthConfig, TrustedIssuerConfig
from weasis_link.settings import ServiceSettings
from weasis_link_dev.dev_keys import JwksServer, SigningKey

DOC = Path(__file__).resolve().parents[2] / "docs" / "identity-providers.md"
RECIPE_BLOCK = re.compile(r"<!-- recipe: ([a-z0-9-]+) -->\n```yaml\n(.*?)```", re.DOTALL)

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TRUSTED_TENANT = "3c1d5e7f-9a2b-4c6d-8e0f-1a2b3c4d5e6f"
THIRD_TENANT = "8b2e4f6a-1c3d-4e5f-a7b9-c1d3e5f7a9b1"
UNTRUSTED_TENANT = "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a"
ENTRA_API = "0b7c4b4a-1f7e-4ad5-9a49-3c2a3c1c0e11"
ENTRA_PORTAL = "5e3a1f42-6a0b-4c8e-9f7d-2b1c0d9e8f70"
ENTRA_DAEMON = "9d2c4e6f-8a1b-4c3d-8e5f-7a9b1c2d3e4f"
COGNITO_CLIENT = "4f1d7n2h8kexample0000000000"
KEYCLOAK = "https://sso.hospital.example/realms/hospital"


def recipes() -> dict[str, dict[str, Any]]:
    """name -> the documented `auth.issuers[0]` entry, as written in docs/identity-providers.md."""
    found = {name: yaml.safe_load(block)["auth"]["issuers"][0] for name, block in RECIPE_BLOCK.findall(DOC.read_text())}
    assert len(found) >= 9, "the recipes of docs/identity-providers.md were not found"
    return found


def _times(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iat": now, "nbf": now, "exp": now + 3600, **extra}


# shape -> (its recipe, claims, extra header). Claims as each provider documents its access tokens.
SHAPES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "Cognito access token": (
        "cognito",
        {
            "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
            "sub": str(uuid.uuid4()),
            "client_id": COGNITO_CLIENT,
            "token_use": "access",
            "scope": "openid weasis-link/launch",
            "cognito:groups": ["radiologists"],
            "username": "alice",
            "auth_time": int(time.time()),
            "jti": str(uuid.uuid4()),
        },
        {},
    ),
    "Entra v2 delegated": (
        "entra-v2",
        {
            "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
            "aud": ENTRA_API,
            "azp": ENTRA_PORTAL,
            "scp": "Weasis.Launch User.Read",
            "tid": TENANT,
            "oid": str(uuid.uuid4()),
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "ver": "2.0",
        },
        {},
    ),
    "Entra v2 app-only": (
        "entra-v2",
        {
            "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
            "aud": ENTRA_API,
            "azp": ENTRA_DAEMON,
            "roles": ["Weasis.Launch"],
            "tid": TENANT,
            "oid": "e7b1c9d2-0000-4000-8000-000000000001",
            "sub": "e7b1c9d2-0000-4000-8000-000000000001",
            "ver": "2.0",
        },
        {},
    ),
    "Entra v1 delegated": (
        "entra-v1",
        {
            "iss": f"https://sts.windows.net/{TENANT}/",
            "aud": "api://weasis-link",
            "appid": ENTRA_PORTAL,
            "scp": "Weasis.Launch",
            "tid": TENANT,
            "upn": "alice@hospital.example",
            "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
            "ver": "1.0",
        },
        {},
    ),
    "Entra v1 app-only": (
        "entra-v1",
        {
            "iss": f"https://sts.windows.net/{TENANT}/",
            "aud": "api://weasis-link",
            "appid": ENTRA_PORTAL,
            "roles": ["Weasis.Launch"],
            "tid": TENANT,
            "sub": "e7b1c9d2-0000-4000-8000-000000000002",
            "ver": "1.0",
        },
        {},
    ),
    "Entra multi-tenant (a second tenant)": (
        "entra-multi-tenant",
        {
            "iss": f"https://login.microsoftonline.com/{OTHER_TRUSTED_TENANT}/v2.0",
            "aud": ENTRA_API,
            "azp": "1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
            "scp": "Weasis.Launch",
            "tid": OTHER_TRUSTED_TENANT,
            "sub": "bob-in-the-partner-tenant",
            "ver": "2.0",
        },
        {},
    ),
    "Keycloak default (aud account)": (
        "keycloak",
        {
            "iss": KEYCLOAK,
            "aud": "account",
            "azp": "weasis-portal",
            "typ": "Bearer",
            "scope": "openid profile weasis.launch",
            "realm_access": {"roles": ["offline_access", "radiologist"]},
            "resource_access": {"account": {"roles": ["view-profile"]}},
            "sub": str(uuid.uuid4()),
            "preferred_username": "alice",
        },
        {},
    ),
    "Keycloak service account (no aud)": (
        "keycloak",
        {
            "iss": KEYCLOAK,
            "azp": "weasis-service",
            "client_id": "weasis-service",
            "typ": "Bearer",
            "scope": "weasis.launch profile",
            "sub": str(uuid.uuid4()),
            "preferred_username": "service-account-weasis-service",
        },
        {},
    ),
    "Keycloak with an audience mapper": (
        "keycloak-audience",
        {
            "iss": "https://sso.hospital.example/realms/radiology",
            "aud": ["weasis-link", "account"],
            "azp": "weasis-portal",
            "typ": "Bearer",
            "scope": "openid weasis.launch",
            "sub": str(uuid.uuid4()),
        },
        {},
    ),
    "Auth0 (aud list with userinfo)": (
        "auth0",
        {
            "iss": "https://hospital.eu.auth0.com/",
            "aud": ["https://weasis-link.hospital.example/api", "https://hospital.eu.auth0.com/userinfo"],
            "azp": "Xy7aBcDeFgHiJkLmNoPqRsTuVwXyZ012",
            "scope": "openid profile launch:weasis",
            "permissions": ["launch:weasis"],
            "sub": "auth0|64f1c2e3d4b5a6978877",
        },
        {},
    ),
    "Okta custom authorization server (scp list)": (
        "okta",
        {
            "iss": "https://hospital.okta.com/oauth2/default",
            "aud": "api://weasis-link",
            "cid": "0oa1b2c3d4e5f6g7h8i9",
            "scp": ["openid", "weasis.launch"],
            "uid": "00u1a2b3c4d5e6f7g8h9",
            "sub": "alice@hospital.example",
            "ver": 1,
            "jti": "AT.abc",
        },
        {},
    ),
    "generic OIDC (RFC 9068)": (
        "generic-oidc",
        {
            "iss": "https://id.hospital.example",
            "aud": "https://weasis-link.hospital.example",
            "client_id": "portal",
            "scope": "weasis.launch",
            "sub": "alice",
            "jti": str(uuid.uuid4()),
        },
        {"typ": "at+jwt"},
    ),
}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("providers-1")


@pytest.fixture(scope="module")
def jwks(key: SigningKey) -> Any:
    server = JwksServer([key]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def settings(service_env: dict[str, str]) -> ServiceSettings:
    # Only the file's issuers: the OAUTH_* shorthand left empty, as a YAML-only deployment sets it.
    return ServiceSettings.from_environment(service_env | {"OAUTH_ISSUER": "", "OAUTH_JWKS_COOLDOWN_SECONDS": "0"})


def entry(name: str, jwks: JwksServer, **overrides: Any) -> dict[str, Any]:
    """A documented recipe, with its keys served by the local JWKS (no provider is reached)."""
    return recipes()[name] | {"jwks-url": jwks.url} | overrides


def validator(settings: ServiceSettings, *entries: dict[str, Any]) -> TokenValidator:
    return TokenValidator(settings, AuthConfig.model_validate({"issuers": list(entries)}))


def token(key: SigningKey, shape: str, **changes: Any) -> str:
    _, claims, header = SHAPES[shape]
    merged = {k: v for k, v in (_times() | claims | changes).items() if v is not None}
    return key.sign(merged, headers=header)


def test_every_documented_recipe_is_a_valid_configuration(jwks: JwksServer) -> None:
    names = set(recipes())
    assert {recipe for recipe, _, _ in SHAPES.values()} == names  # every recipe has a token shape, and back
    for name in names:
        TrustedIssuerConfig.model_validate(recipes()[name])  # as written, discovery and all


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_is_accepted_under_its_recipe(
    settings: ServiceSettings, jwks: JwksServer, key: SigningKey, shape: str
) -> None:
    recipe = SHAPES[shape][0]
    caller = validator(settings, entry(recipe, jwks)).validate(token(key, shape))
    assert isinstance(caller, Caller)
    assert caller.trusted_issuer is not None and caller.trusted_issuer.issuer == recipes()[recipe]["issuer"]
    assert set(recipes()[recipe].get("required-scopes", [])) <= caller.scopes


@pytest.mark.parametrize("shape", list(SHAPES))
def test_all_recipes_together_accept_each_shape(
    settings: ServiceSettings, jwks: JwksServer, key: SigningKey, shape: str
) -> None:
    """One multi-issuer configuration holding every recipe: each token is checked against the entry its iss names."""
    everything = validator(settings, *(entry(name, jwks) for name in recipes()))
    assert everything.validate(token(key, shape)).trusted_issuer.issuer == recipes()[SHAPES[shape][0]]["issuer"]  # type: ignore[union-attr]


MATRIX = [
    (shape, name) for shape in SHAPES for name in sorted({r for r, _, _ in SHAPES.values()}) if name != SHAPES[shape][0]
]


@pytest.mark.parametrize(("shape", "recipe"), MATRIX)
def test_each_shape_is_refused_under_every_other_recipe(
    settings: ServiceSettings, jwks: JwksServer, key: SigningKey, shape: str, recipe: str
) -> None:
    fetches = jwks.fetches
    # An issuer (or Entra ID tenant) that is not trusted: refused by iss, before any key was fetched.
    with pytest.raises(AuthenticationError, match=r"(issuer|tenant) that is not trusted"):
        validator(settings, entry(recipe, jwks)).validate(token(key, shape))
    assert jwks.fetches == fetches


# Keycloak without an audience mapper checks the client only: on the mapper realm's issuer, its rules accept what
# the stricter mapper recipe accepts (by design: the same provider, a weaker recipe).
WEAKER_VARIANT = {("Keycloak with an audience mapper", "keycloak")}


@pytest.mark.parametrize(("shape", "recipe"), MATRIX)
def test_each_shape_is_refused_by_every_other_recipes_rules_on_its_own_issuer(
    settings: ServiceSettings, jwks: JwksServer, key: SigningKey, shape: str, recipe: str
) -> None:
    """The other recipe's audiences, clients, token_use, tenants, scopes and token type, applied to this shape's
    issuer: still refused (401, or 403 for a missing scope)."""
    rules = {k: v for k, v in entry(recipe, jwks).items() if k != "issuer"}
    rules["issuer"] = SHAPES[shape][1]["iss"]  # a {tenantid} recipe's tenants rule stays, on a concrete issuer
    if (shape, recipe) in WEAKER_VARIANT:
        assert validator(settings, rules).validate(token(key, shape))
        return
    with pytest.raises((AuthenticationError, InsufficientScope)):
        validator(settings, rules).validate(token(key, shape))


# --- what the table of issue 11 could not do, and the refusals each recipe exists for --------------------------


def test_keycloak_default_token_of_another_client_is_refused(
    settings: ServiceSettings, jwks: JwksServer, key: SigningKey
) -> None:
    keycloak = validator(settings, entry("keycloak", jwks))
    with pytest.raises(AuthenticationError, match="client this service does not accept"):
        keycloak.validate(token(key, "Keycloak default (aud account)", azp="billing-app"))
    with pytest.raises(AuthenticationError, match="client this service does not accept"):  # no hiding behind azp
        keycloak.validate(token(key, "Keycloak service account (no aud)", client_id="billing-app"))
    with pytest.raises(AuthenticationError, match="names no client"):
        keycloak.validate(token(key, "Keycloak default (aud account)", azp=None))


def test_entra_token_from_a_tenant_not_listed_is_refused_without_a_network_call(
    settings: ServiceSettings, jwks: JwksServer, key: SigningKey
) -> None:
    multi = validator(settings, entry("entra-multi-tenant", jwks))
    fetches = jwks.fetches
    stranger = f"https://login.microsoftonline.com/{UNTRUSTED_TENANT}/v2.0"
    with pytest.raises(AuthenticationError, match="tenant that is not trusted"):
        multi.validate(token(key, "Entra multi-tenant (a second tenant)", iss=stranger, tid=UNTRUSTED_TENANT))
    assert jwks.fetches == fetches
    # A listed tenant in iss, another in tid: the tenant must be the one the issuer names.
    with pytest.raises(AuthenticationError, match="tid"):
        multi.validate(token(key, "Entra multi-tenant (a second tenant)", tid=THIRD_TENANT))
    with pytest.raises(AuthenticationError, match="tid"):
        multi.validate(token(key, "Entra multi-tenant (a second tenant)", tid=None))
    # Not one path segment: the template does not stretch over slashes or into another host.
    for iss in (
        f"https://login.microsoftonline.com/{OTHER_TRUSTED_TENANT}/x/v2.0",
        f"https://login.microsoftonline.com.evil.example/{OTHER_TRUSTED_TENANT}/v2.0",
    ):
        with pytest.raises(AuthenticationError, match="issuer that is not trusted"):
            multi.validate(token(key, "Entra multi-tenant (a second tenant)", iss=iss))


def test_entra_app_only_roles_count_only_when_the_recipe_says_so(
    settings: ServiceSettings, jwks: JwksServer, key: SigningKey
) -> None:
    without_roles = validator(settings, entry("entra-v2", jwks, **{"roles-as-scopes": False}))
    with pytest.raises(InsufficientScope):
        without_roles.validate(token(key, "Entra v2 app-only"))
    assert validator(settings, entry("entra-v2", jwks)).validate(token(key, "Entra v2 app-only"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"token_use": "id", "aud": COGNITO_CLIENT}, "not an access token"),  # a Cognito ID token
        ({"token_use": None}, "token_use"),
        ({"client_id": "another-app-client"}, "client this service does not accept"),
        ({"scope": "openid"}, None),
    ],
)
def test_cognito_recipe_refuses(
    settings: ServiceSettings, jwks: JwksServer, key: SigningKey, changes: dict[str, Any], message: str | None
) -> None:
    cognito = validator(settings, entry("cognito", jwks))
    error = InsufficientScope if message is None else AuthenticationError
    with pytest.raises(error, match=message):
        cognito.validate(token(key, "Cognito access token", **changes))


@pytest.mark.parametrize("typ", [None, "JWT", "id_token+jwt"])
def test_required_access_token_type(
    settings: ServiceSettings, jwks: JwksServer, key: SigningKey, typ: str | None
) -> None:
    generic = validator(settings, entry("generic-oidc", jwks))
    _, claims, _ = SHAPES["generic OIDC (RFC 9068)"]
    headers = {} if typ is None else {"typ": typ}
    with pytest.raises(AuthenticationError, match="not an access token"):
        generic.validate(key.sign(_times() | claims, headers=headers))
    assert generic.validate(key.sign(_times() | claims, headers={"typ": "application/at+jwt"}))


def test_auth0_userinfo_only_audience_is_refused(settings: ServiceSettings, jwks: JwksServer, key: SigningKey) -> None:
    auth0 = validator(settings, entry("auth0", jwks))
    with pytest.raises(AuthenticationError, match="aud"):
        auth0.validate(token(key, "Auth0 (aud list with userinfo)", aud="https://hospital.eu.auth0.com/userinfo"))
