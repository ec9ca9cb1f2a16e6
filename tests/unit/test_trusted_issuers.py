"""The `auth:` block: validation at cold start, the OAUTH_* shorthand as one more issuer, OpenID discovery fetched
lazily (and checked), and issuer selection that costs no network call for an unknown issuer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from weasis_link.auth import TokenValidator
from weasis_link.config import load_config
from weasis_link.errors import AuthenticationError, ConfigurationError, IdentityProviderUnavailable
from weasis_link.identity import AuthConfig, trusted_issuers
from weasis_link.settings import ServiceSettings
from weasis_link_dev.dev_keys import DEV_ISSUER, JwksServer, SigningKey, access_token_claims

CONNECTORS = {
    "wado": {"url": "https://pacs.example/wado"},
    "connector": {"config": {"pacs": {"type": "DICOM_WEB", "dicom-web-connector": {"url": "https://pacs.example/rs"}}}},
}


def write_config(tmp_path: Path, auth: dict[str, Any]) -> Path:
    path = tmp_path / "weasis-link.yaml"
    path.write_text(yaml.safe_dump(CONNECTORS | {"auth": auth}))
    return path


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("disco-1")


def yaml_only(service_env: dict[str, str], **extra: str) -> ServiceSettings:
    return ServiceSettings.from_environment(service_env | {"OAUTH_ISSUER": "", "OAUTH_JWKS_URL": ""} | extra)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"issuer": "https://idp.example"}, "issuer https://idp.example: set audiences or client-ids"),
        (
            {
                "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                "audiences": ["a"],
                "jwks-url": "https://k",
            },
            "needs the list of tenants",
        ),
        (
            {"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0", "audiences": ["a"], "tenants": ["t-1"]},
            "needs jwks-url",
        ),
        ({"issuer": "https://idp.example/{realm}", "audiences": ["a"]}, "only placeholder allowed"),
        ({"issuer": "http://idp.example", "audiences": ["a"]}, "discovery document must use https"),
        (
            {"issuer": "https://idp.example", "audiences": ["a"], "jwks-url": "http://localhost.attacker.example/jwks"},
            "https",
        ),
        ({"issuer": "https://idp.example", "audiences": ["a"], "jwks-url": "http://127.0.0.1.nip.io/jwks"}, "https"),
        ({"issuer": "https://idp.example", "audiences": ["a"], "jwks-url": "http://localhostevil.com/j"}, "https"),
        ({"issuer": "https://idp.example", "audiences": ["a"], "scopes": ["x"]}, "Extra inputs are not permitted"),
        ({"issuer": "https://idp.example", "audiences": ["a"], "algorithms": ["HS256"]}, "algorithms"),
        ({"issuer": "https://idp.example", "audiences": ["a"], "token-use": "id"}, "token-use"),
    ],
)
def test_bad_issuer_entries_are_refused_at_cold_start(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as err:
        load_config(write_config(tmp_path, {"issuers": [entry]}))
    assert "auth.issuers.0" in err.value.detail and str(tmp_path) in err.value.detail


def test_an_issuer_may_be_listed_once(tmp_path: Path) -> None:
    entry = {"issuer": "https://idp.example", "audiences": ["a"]}
    with pytest.raises(ConfigurationError, match="listed twice"):
        load_config(write_config(tmp_path, {"issuers": [entry, entry | {"audiences": ["b"]}]}))


def test_oauth_variables_are_one_more_issuer(service_env: dict[str, str]) -> None:
    settings = ServiceSettings.from_environment(service_env)
    auth = AuthConfig.model_validate({"issuers": [{"issuer": "https://idp.example", "client-ids": ["portal"]}]})
    assert [i.issuer for i in trusted_issuers(settings, auth)] == [DEV_ISSUER, "https://idp.example"]
    twice = AuthConfig.model_validate({"issuers": [{"issuer": DEV_ISSUER, "client-ids": ["portal"]}]})
    with pytest.raises(ConfigurationError, match="configured twice"):
        trusted_issuers(settings, twice)


def test_no_issuer_at_all_is_a_configuration_error(service_env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="No trusted identity provider"):
        TokenValidator(yaml_only(service_env))
    with pytest.raises(ConfigurationError, match="OAUTH_AUDIENCES"):
        TokenValidator(ServiceSettings.from_environment(service_env | {"OAUTH_AUDIENCES": ""}))


def test_discovery_is_fetched_at_the_first_token_then_kept(
    service_env: dict[str, str], provider: JwksServer, key: SigningKey
) -> None:
    auth = AuthConfig.model_validate({"issuers": [{"issuer": provider.base_url, "audiences": ["weasis-link"]}]})
    validator = TokenValidator(yaml_only(service_env), auth)
    assert provider.fetches == 0  # nothing at cold start
    for _ in range(3):
        assert validator.validate(key.sign(access_token_claims(issuer=provider.base_url))).subject == "dev-user"
    assert (provider.discovery_fetches, provider.fetches) == (1, 2)  # one discovery document, one key set


LYING_OR_BROKEN_DOCUMENTS = [
    {"issuer": "https://another.example", "jwks_uri": "JWKS"},
    {"issuer": "ISSUER/", "jwks_uri": "JWKS"},  # not equal: a trailing slash is another issuer
    {"issuer": "ISSUER", "jwks_uri": "http://keys.attacker.example/jwks"},
    {"issuer": "ISSUER"},
    {"keys": "[]"},  # a JWKS where the document should be
]


def _refused_discovery(
    service_env: dict[str, str], provider: JwksServer, key: SigningKey, document: dict[str, str]
) -> tuple[TokenValidator, str]:
    """A validator whose provider serves `document`; five tokens refused with one fetch, no key set fetched."""
    provider.discovery = {
        k: v.replace("ISSUER", provider.base_url).replace("JWKS", provider.url) for k, v in document.items()
    }
    auth = AuthConfig.model_validate({"issuers": [{"issuer": provider.base_url, "audiences": ["weasis-link"]}]})
    validator = TokenValidator(yaml_only(service_env, OAUTH_JWKS_COOLDOWN_SECONDS="1"), auth)
    token = key.sign(access_token_claims(issuer=provider.base_url))
    for _ in range(5):
        with pytest.raises(IdentityProviderUnavailable, match="discovery document"):
            validator.validate(token)
    assert provider.discovery_fetches == 1
    assert provider.fetches == 1  # the keys were never fetched from an unchecked document
    return validator, token


@pytest.mark.parametrize("document", LYING_OR_BROKEN_DOCUMENTS)
def test_a_lying_or_broken_discovery_document_is_503_and_not_refetched_before_the_cooldown(
    service_env: dict[str, str], provider: JwksServer, key: SigningKey, document: dict[str, str]
) -> None:
    _refused_discovery(service_env, provider, key, document)


def test_after_the_cooldown_a_fixed_discovery_document_is_used(
    service_env: dict[str, str], provider: JwksServer, key: SigningKey
) -> None:
    validator, token = _refused_discovery(service_env, provider, key, LYING_OR_BROKEN_DOCUMENTS[0])
    provider.discovery = None  # the provider is fixed: after the cooldown, discovery succeeds
    time.sleep(1.1)  # the cooldown is whole seconds and read from the monotonic clock
    assert validator.validate(token).subject == "dev-user"
    assert provider.discovery_fetches == 2


def test_discovery_outage_is_503(service_env: dict[str, str], provider: JwksServer, key: SigningKey) -> None:
    provider.down = True
    auth = AuthConfig.model_validate({"issuers": [{"issuer": provider.base_url, "audiences": ["weasis-link"]}]})
    validator = TokenValidator(yaml_only(service_env), auth)
    with pytest.raises(IdentityProviderUnavailable, match="cannot be fetched"):
        validator.validate(key.sign(access_token_claims(issuer=provider.base_url)))


def test_unknown_issuers_cost_no_network_call(
    service_env: dict[str, str], provider: JwksServer, key: SigningKey
) -> None:
    auth = AuthConfig.model_validate({"issuers": [{"issuer": provider.base_url, "audiences": ["weasis-link"]}]})
    validator = TokenValidator(ServiceSettings.from_environment(service_env | {"OAUTH_JWKS_URL": provider.url}), auth)
    for i in range(200):
        with pytest.raises(AuthenticationError, match="issuer that is not trusted"):
            validator.validate(key.sign(access_token_claims(issuer=f"https://idp-{i}.example")))
    assert provider.fetches == 0


def test_a_token_signed_by_one_issuers_key_claiming_another_is_refused(service_env: dict[str, str]) -> None:
    a_key, b_key = SigningKey.generate("shared-kid"), SigningKey.generate("shared-kid")
    a, b = JwksServer([a_key]).start(), JwksServer([b_key]).start()
    try:
        auth = AuthConfig.model_validate(
            {
                "issuers": [
                    {"issuer": "https://a.example", "jwks-url": a.url, "audiences": ["weasis-link"]},
                    {"issuer": "https://b.example", "jwks-url": b.url, "audiences": ["weasis-link"]},
                ]
            }
        )
        validator = TokenValidator(yaml_only(service_env), auth)
        assert validator.validate(a_key.sign(access_token_claims(issuer="https://a.example")))
        assert validator.validate(b_key.sign(access_token_claims(issuer="https://b.example")))
        with pytest.raises(AuthenticationError, match="signature"):
            validator.validate(a_key.sign(access_token_claims(issuer="https://b.example")))
        other_kid = SigningKey(a_key.private_key, "a-only")
        a.keys = [other_kid]
        with pytest.raises(AuthenticationError):
            validator.validate(other_kid.sign(access_token_claims(issuer="https://b.example")))
    finally:
        a.stop()
        b.stop()
