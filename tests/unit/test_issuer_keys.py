"""Each issuer's key set, fetched with urllib3 (key_urls.fetch_json) and handed to PyJWT: prefetched on a thread at
Init, waited for by the first token, fetched again by it when the prefetch failed; no redirect followed, a size limit,
a garbled answer is the identity provider's failure (503), and https through one shared, verifying TLS context (as
the QIDO connectors' and the token endpoints' pools)."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
import urllib3

from weasis_link.auth import TokenValidator
from weasis_link.config import ClientCredentialsConfig, DicomWebConnectorConfig
from weasis_link.connectors.dicomweb import DicomWebConnector
from weasis_link.errors import IdentityProviderUnavailable
from weasis_link.identity import AuthConfig
from weasis_link.issuer_keys import MAX_KEY_SET_BYTES
from weasis_link.key_urls import KeyFetchError, fetch_json, key_pool
from weasis_link.oauth_client import ClientCredentialsTokenProvider
from weasis_link.settings import ServiceSettings
from weasis_link.upstream_retry import tls_context
from weasis_link_dev.dev_keys import JwksServer, SigningKey, access_token_claims
from weasis_link_dev.loopback_http import Answer, LoopbackServer, Request


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("prefetch-1")


def validator_for(service_env: dict[str, str], provider: JwksServer, *, discovery: bool) -> TokenValidator:
    settings = ServiceSettings.from_environment(service_env | {"OAUTH_ISSUER": "", "OAUTH_JWKS_URL": ""})
    entry = {"issuer": provider.base_url, "audiences": ["weasis-link"]}
    auth = AuthConfig.model_validate({"issuers": [entry if discovery else entry | {"jwks-url": provider.url}]})
    return TokenValidator(settings, auth)


def wait_for_prefetch(validator: TokenValidator) -> None:
    validator.settle_prefetch()  # what the API function does at the end of Init


@pytest.mark.parametrize("discovery", [False, True])
def test_the_prefetched_key_set_serves_the_first_tokens(
    service_env: dict[str, str], provider: JwksServer, key: SigningKey, discovery: bool
) -> None:
    validator = validator_for(service_env, provider, discovery=discovery)
    validator.prefetch_keys()
    wait_for_prefetch(validator)
    fetched = provider.fetches
    assert fetched == (2 if discovery else 1)  # the key set (after the discovery document) fetched at Init
    for _ in range(3):
        assert validator.validate(key.sign(access_token_claims(issuer=provider.base_url))).subject == "dev-user"
    assert provider.fetches == fetched  # no request waited for the network


@contextlib.contextmanager
def held_provider(
    service_env: dict[str, str], key: SigningKey, release: threading.Event
) -> Iterator[tuple[TokenValidator, JwksServer, list[str]]]:
    """A provider whose key set answers once `release` is set (at most 5 s), a validator whose prefetch is under way
    against it, and the paths fetched."""
    fetches: list[str] = []

    def held(request: Request) -> Answer:
        fetches.append(request.path)
        release.wait(5)
        return Answer.json({"keys": [key.public_jwk()]})

    with LoopbackServer(held) as server:
        provider = JwksServer([key], port=server.port)  # only for its URLs
        validator = validator_for(service_env, provider, discovery=False)
        validator.prefetch_keys()
        yield validator, provider, fetches


def test_the_first_token_waits_for_the_prefetch_rather_than_fetching_again(
    service_env: dict[str, str], key: SigningKey
) -> None:
    release = threading.Event()
    with held_provider(service_env, key, release) as (validator, provider, fetches):
        threading.Timer(0.2, release.set).start()
        assert validator.validate(key.sign(access_token_claims(issuer=provider.base_url))).subject == "dev-user"
    assert len(fetches) == 1


def test_the_end_of_init_waits_for_a_hung_prefetch_no_longer_than_its_bound(
    service_env: dict[str, str], key: SigningKey
) -> None:
    release = threading.Event()
    with held_provider(service_env, key, release) as (validator, provider, _):
        started = time.monotonic()
        validator.settle_prefetch(timeout=0.3)
        assert 0.25 <= time.monotonic() - started < 2  # bounded: Init goes on without the keys
        release.set()
        # The first token then fetches the keys itself.
        assert validator.validate(key.sign(access_token_claims(issuer=provider.base_url))).subject == "dev-user"


@pytest.mark.parametrize("discovery", [False, True])
def test_a_failed_prefetch_is_retried_by_the_first_token(
    service_env: dict[str, str], provider: JwksServer, key: SigningKey, discovery: bool
) -> None:
    provider.down = True  # the provider is down at Init
    validator = validator_for(service_env, provider, discovery=discovery)
    validator.prefetch_keys()
    wait_for_prefetch(validator)
    assert provider.fetches == 1
    provider.down = False  # and back when the first request comes, within the cooldown
    assert validator.validate(key.sign(access_token_claims(issuer=provider.base_url))).subject == "dev-user"


def answering(answer: Answer) -> LoopbackServer:
    return LoopbackServer(lambda _: answer)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(302, b"", {"Location": "http://127.0.0.1:9/jwks"}), "unreachable"),  # never followed
        (Answer(404, b"{}"), "unreachable"),
        (Answer(200, b"{" * (MAX_KEY_SET_BYTES + 1)), "too-large"),
        (Answer(200, b"<html>"), "not-json"),
    ],
)
def test_fetch_json_refuses_redirects_errors_large_and_garbled_answers(answer: Answer, reason: str) -> None:
    with answering(answer) as server:
        url = f"{server.base_url}/jwks"
        with pytest.raises(KeyFetchError) as refused:
            fetch_json(key_pool(), url, timeout=2, max_bytes=MAX_KEY_SET_BYTES)
        assert len(server.requests) == 1  # no retry
    assert refused.value.reason == reason
    assert "127.0.0.1" not in str(refused.value)


@pytest.mark.parametrize("body", [b"<html>", json.dumps({"keys": "x" * (MAX_KEY_SET_BYTES + 1)}).encode()])
def test_a_garbled_or_oversized_key_set_is_the_identity_providers_failure(
    service_env: dict[str, str], key: SigningKey, body: bytes
) -> None:
    with answering(Answer(200, body)) as server:
        provider = JwksServer([key], port=server.port)
        validator = validator_for(service_env, provider, discovery=False)
        with pytest.raises(IdentityProviderUnavailable, match="signing keys cannot be fetched"):
            validator.validate(key.sign(access_token_claims(issuer=provider.base_url)))


def test_https_key_urls_share_one_verifying_tls_context() -> None:
    context = tls_context()
    assert context is tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs()  # the system's CA store, loaded once


def test_an_https_key_url_with_an_untrusted_certificate_is_refused() -> None:
    # A plain-http server spoken to over https: the handshake fails, whatever the verification, so the pool the fetch
    # used is checked for the shared, verifying context too.
    with answering(Answer.json({"keys": []})) as server:
        http = key_pool()
        url = f"https://127.0.0.1:{server.port}/jwks"
        with pytest.raises(KeyFetchError, match="cannot be fetched"):
            fetch_json(http, url, timeout=2, max_bytes=1024)
        pool = http.connection_from_url(url, pool_kwargs={"ssl_context": tls_context()})
        assert len(http.pools) == 1  # the pool the fetch used: no other was made for this context
        assert isinstance(pool, urllib3.HTTPSConnectionPool) and pool.conn_kw["ssl_context"] is tls_context()


@pytest.mark.parametrize(
    ("url", "ca_file", "expected"),
    [
        ("https://pacs.example/dicom-web", None, "shared"),
        ("https://pacs.example/dicom-web", "/etc/pacs-ca.pem", "own"),
        ("http://127.0.0.1:8042/dicom-web", None, "none"),
    ],
)
def test_the_qido_and_token_pools_share_the_tls_context(url: str, ca_file: str | None, expected: str) -> None:
    connector = DicomWebConnector("pacs", DicomWebConnectorConfig(url=url, ca_file=ca_file))
    pools = [connector._http]
    if ca_file is None:  # a token endpoint has no CA file of its own
        config = ClientCredentialsConfig(token_url=url.replace("dicom-web", "token"), client_id="c", client_secret="s")
        pools.append(ClientCredentialsTokenProvider(config)._http)
    for pool in pools:
        options = pool.connection_pool_kw
        if expected == "shared":
            assert options["ssl_context"] is tls_context() and "ca_certs" not in options
        elif expected == "own":  # urllib3 loads it into a context of the pool's own, never into the shared one
            assert options["ca_certs"] == ca_file and "ssl_context" not in options
        else:
            assert "ssl_context" not in options and "ca_certs" not in options
