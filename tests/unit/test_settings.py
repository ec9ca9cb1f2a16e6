"""Service settings come from the environment template.yaml sets; a bad one names its variable."""

from __future__ import annotations

import pytest

from weasis_link.errors import ConfigurationError
from weasis_link.settings import ENVIRONMENT, ServiceSettings

BASE = {
    "MANIFEST_BUCKET": "bucket-1",
    "OAUTH_ISSUER": "https://idp.example/realms/h",
    "OAUTH_AUDIENCES": "weasis-link, portal",
    "OAUTH_JWKS_URL": "https://idp.example/realms/h/certs",
}


def test_defaults_and_lists() -> None:
    s = ServiceSettings.from_environment(BASE | {"OAUTH_REQUIRED_SCOPES": "a b,c", "OAUTH_ALGORITHMS": "RS256,ES256"})
    assert s.oauth_audiences == ["weasis-link", "portal"]
    assert s.oauth_required_scopes == ["a", "b", "c"]
    assert s.oauth_algorithms == ["RS256", "ES256"]
    assert (s.manifest_ttl_seconds, s.presign_expires_seconds, s.manifest_prefix) == (300, 300, "manifests/")
    assert s.allow_access_token_query is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OAUTH_ALGORITHMS": "HS256"}, "environment variable OAUTH_ALGORITHMS"),
        ({"OAUTH_ALGORITHMS": "none"}, "environment variable OAUTH_ALGORITHMS"),
        (
            {"OAUTH_JWKS_URL": "http://idp.example/certs"},
            "environment variable OAUTH_JWKS_URL: Value error, must use https",
        ),
        ({"MANIFEST_TTL_SECONDS": "5"}, "environment variable MANIFEST_TTL_SECONDS"),
        ({"MANIFEST_PREFIX": "../x"}, "environment variable MANIFEST_PREFIX"),
        ({"ALLOW_ACCESS_TOKEN_QUERY": "perhaps"}, "environment variable ALLOW_ACCESS_TOKEN_QUERY"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ServiceSettings.from_environment(BASE | env)


def test_missing_required_setting_is_named_without_echoing_values() -> None:
    with pytest.raises(ConfigurationError) as err:
        ServiceSettings.from_environment({k: v for k, v in BASE.items() if k != "MANIFEST_BUCKET"})
    assert "MANIFEST_BUCKET" in err.value.detail and "idp.example" not in err.value.detail


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost.attacker.example/jwks",
        "http://127.0.0.1.nip.io/jwks",
        "http://localhostevil.com/j",
        "http://localhost@evil.example/jwks",
        "http://[::2]/jwks",
        "https://user:secret@idp.example/jwks",
        "ftp://idp.example/jwks",
        "file:///etc/passwd",
        "https:///jwks",
    ],
)
def test_key_urls_are_checked_by_their_parsed_host(url: str) -> None:
    """Plain http only when the parsed host is exactly 127.0.0.1, ::1 or localhost: a prefix match let a hostile or
    mistyped setting fetch signing keys over plain HTTP from anywhere."""
    with pytest.raises(ConfigurationError, match="environment variable OAUTH_JWKS_URL: Value error, must") as err:
        ServiceSettings.from_environment(BASE | {"OAUTH_JWKS_URL": url})
    assert "secret" not in err.value.detail


@pytest.mark.parametrize(
    "url",
    ["https://idp.example/certs", "http://127.0.0.1:8080/jwks", "http://[::1]:8080/jwks", "http://LOCALHOST/j"],
)
def test_https_and_loopback_key_urls_are_accepted(url: str) -> None:
    assert ServiceSettings.from_environment(BASE | {"OAUTH_JWKS_URL": url}).oauth_jwks_url == url


def test_empty_oauth_variables_count_as_unset() -> None:
    """A deployment may trust only the issuers of the configuration file: template parameters left empty."""
    s = ServiceSettings.from_environment(BASE | {"OAUTH_ISSUER": "", "OAUTH_JWKS_URL": "", "OAUTH_AUDIENCES": ""})
    assert (s.oauth_issuer, s.oauth_jwks_url, s.oauth_audiences) == (None, None, [])


def test_every_field_has_an_environment_variable() -> None:
    assert set(ENVIRONMENT.values()) == set(ServiceSettings.model_fields)
