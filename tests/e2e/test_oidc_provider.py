"""Tokens of a real OpenID provider (node's `oidc-provider`: JWT access tokens, `typ: at+jwt`, RFC 8707 resource
indicators) end to end over HTTP, with the service configured by discovery alone: the `auth:` block names the issuer,
its audience and clients, and no jwks-url; the OAUTH_* variables are left empty.

Accepted: client-credentials and authorization-code tokens (manifest built, valid against the XSD, the token
injected into the arcQuery). Refused: the same provider's ID token, a token for another resource, a token of another
client, an expired token, and a token signed by a key the provider has rotated out."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from weasis_link_dev.oidc_provider import Client, OidcProvider
from weasis_link_dev.pytest_oidc import OidcProviderFactory, config_with_auth
from weasis_link_dev.pytest_stack import StackFactory, StackHandle
from weasis_link_dev.weasis_client import fetch_manifest, read_manifest, validate

pytestmark = pytest.mark.e2e
API = "https://weasis-link.test"
OTHER_API = "https://billing.test"
QUERY = "/manifests?patientID=WLS-1001"
CLIENTS = [Client("weasis-portal"), Client("billing-app"), Client("weasis-brief", token_ttl=2)]


def auth_block(provider: OidcProvider) -> dict[str, Any]:
    return {
        "issuers": [
            {
                "issuer": provider.issuer,  # no jwks-url: discovery
                "audiences": [API],
                "client-ids": ["weasis-portal", "weasis-brief"],
                "required-scopes": ["weasis.launch"],
                "require-access-token-type": True,
            }
        ]
    }


def stack_for(factory: StackFactory, provider: OidcProvider) -> StackHandle:
    config = config_with_auth(auth_block(provider), Path(tempfile.mkdtemp(prefix="weasis-link-oidc-stack-")))
    return factory(
        config=config,
        env={
            # Empty template parameters: only the configuration file's issuers are trusted.
            "OAUTH_ISSUER": "",
            "OAUTH_JWKS_URL": "",
            "OAUTH_AUDIENCES": "",
            "OAUTH_REQUIRED_SCOPES": "",
            "OAUTH_LEEWAY_SECONDS": "0",
            "OAUTH_JWKS_CACHE_SECONDS": "2",
            "OAUTH_JWKS_COOLDOWN_SECONDS": "1",
        },
    )


@pytest.fixture(scope="module")
def provider(oidc_provider_factory: OidcProviderFactory) -> OidcProvider:
    return oidc_provider_factory(CLIENTS, {API: "weasis.launch", OTHER_API: "weasis.launch"})


@pytest.fixture(scope="module")
def stack(local_stack_factory: StackFactory, provider: OidcProvider) -> StackHandle:
    return stack_for(local_stack_factory, provider)


def assert_manifest_carries(stack: StackHandle, token: str) -> None:
    status, _, body = stack.get(QUERY, token)
    assert status == 200, body
    xml = fetch_manifest(str(json.loads(body)["manifestUrl"])).xml
    assert validate(xml) == []
    [view] = read_manifest(xml)
    assert view.http_tags == {"Authorization": f"Bearer {token}"}
    assert view.instances


def assert_refused(stack: StackHandle, token: str, status: int = 401) -> dict[str, Any]:
    before = stack.object_keys()
    code, headers, body = stack.get(QUERY, token)
    assert code == status, body
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert stack.object_keys() == before
    problem: dict[str, Any] = json.loads(body)
    return problem


def test_client_credentials_token_is_accepted_end_to_end(stack: StackHandle, provider: OidcProvider) -> None:
    assert_manifest_carries(stack, provider.client_credentials("weasis-portal", API))


def test_authorization_code_token_is_accepted_end_to_end(stack: StackHandle, provider: OidcProvider) -> None:
    tokens = provider.authorization_code("weasis-portal", API, user="dr-house")
    assert_manifest_carries(stack, tokens.access_token)
    assert_refused(stack, tokens.id_token)  # the same login's ID token is no credential for an API


def test_token_for_another_resource_is_refused(stack: StackHandle, provider: OidcProvider) -> None:
    problem = assert_refused(stack, provider.client_credentials("weasis-portal", OTHER_API))
    assert "aud" in problem["detail"]


def test_token_of_another_client_is_refused(stack: StackHandle, provider: OidcProvider) -> None:
    problem = assert_refused(stack, provider.client_credentials("billing-app", API))
    assert "client" in problem["detail"]


def test_expired_token_is_refused(stack: StackHandle, provider: OidcProvider) -> None:
    token = provider.client_credentials("weasis-brief", API)  # lives 2 s
    # Valid, but too short-lived for a manifest (capability.py): refused as such, not as invalid.
    assert assert_refused(stack, token)["type"] == "urn:weasis-link:problem:token-expires-too-soon"
    time.sleep(3.1)
    assert "expired" in assert_refused(stack, token)["detail"]


def test_token_signed_before_a_key_rotation_is_refused(
    local_stack_factory: StackFactory, oidc_provider_factory: OidcProviderFactory
) -> None:
    provider = oidc_provider_factory(CLIENTS, {API: "weasis.launch"})
    stack = stack_for(local_stack_factory, provider)
    try:
        old = provider.client_credentials("weasis-portal", API)
        assert stack.get(QUERY, old)[0] == 200
        provider.rotate_keys()  # same issuer and port, a new key only
        time.sleep(2.5)  # past the service's key-set lifespan (OAUTH_JWKS_CACHE_SECONDS=2)
        assert "signed by a key of the issuer" in assert_refused(stack, old)["detail"]
        assert stack.get(QUERY, provider.client_credentials("weasis-portal", API))[0] == 200
    finally:
        stack.stop()
        provider.stop()
