"""PUBLIC_BASE_URL checked at cold start (weasis_link/public_url.py, settings.py)."""

from __future__ import annotations

import pytest

from weasis_link.errors import ConfigurationError
from weasis_link.launch_uri import weasis_uri
from weasis_link.public_url import check_public_base_url
from weasis_link.settings import ServiceSettings

ENV = {
    "MANIFEST_BUCKET": "bucket",
    "OAUTH_ISSUER": "https://idp.example",
    "OAUTH_AUDIENCES": "weasis-link",
    "OAUTH_JWKS_URL": "https://idp.example/jwks",
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://viewer.example.org", "https://viewer.example.org"),
        ("https://viewer.example.org/", "https://viewer.example.org"),
        ("https://viewer.example.org:8443/prod/", "https://viewer.example.org:8443/prod"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("http://localhost:3000/", "http://localhost:3000"),
    ],
)
def test_good_values_are_kept_without_their_trailing_slash(value: str, expected: str) -> None:
    assert check_public_base_url(value) == expected
    assert ServiceSettings.from_environment(ENV | {"PUBLIC_BASE_URL": value}).public_base_url == expected
    weasis_uri(f"{expected}/manifests/1700000000-{'a' * 32}")  # the links it makes are launchable


@pytest.mark.parametrize(
    "value",
    [
        "https://viewer.example/'",
        "https://viewer.example/\\",
        "https://viewer.example/<x>",
        "https://viewer.example/{stage}",
        'https://viewer.example/"',
        "https://viewer.example/$x",
        "https://viewer.example/a b",
        "https://viewer.example/?a=b",
        "https://viewer.example/#top",
        "https://user:pw@viewer.example",
        "https://@viewer.example",
        "http://viewer.example",
        "ftp://viewer.example",
        "viewer.example",
        "https://",
        "https://viewer.example:x/",
    ],
)
def test_bad_values_fail_the_cold_start_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=r"^(must|has|yields) "):
        check_public_base_url(value)
    with pytest.raises(ConfigurationError) as raised:
        ServiceSettings.from_environment(ENV | {"PUBLIC_BASE_URL": value})
    assert "environment variable PUBLIC_BASE_URL" in raised.value.detail
    assert "pw@" not in raised.value.detail  # the value itself is never echoed
