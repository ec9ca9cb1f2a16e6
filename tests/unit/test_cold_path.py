"""What the API function does to shorten its cold start: garbage collection paused during init and the heap frozen
after it (weasis_link.init_phase), and the JWKS fetched while init runs (weasis_link.jwks_prefetch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from weasis_link.auth import TokenValidator, jwks_client
from weasis_link.jwks_prefetch import JwksPrefetch
from weasis_link.settings import ServiceSettings
from weasis_link_dev.dev_keys import JwksServer, SigningKey, access_token_claims

GC_STATE = "import gc, json; print(json.dumps([gc.isenabled(), gc.get_freeze_count()]))"


def python(code: str, env: dict[str, str]) -> list[object]:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    answer: list[object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_importing_init_phase_pauses_the_collector() -> None:
    enabled, _ = python("import weasis_link.init_phase; " + GC_STATE, dict(os.environ))
    assert enabled is False


def test_the_api_function_ends_init_with_a_frozen_heap_and_the_collector_on(service_env: dict[str, str]) -> None:
    enabled, frozen = python("import functions.api.app; " + GC_STATE, {**os.environ, **service_env})
    assert enabled is True
    assert isinstance(frozen, int) and frozen > 100_000  # everything init created: Powertools, pydantic, boto3


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer([SigningKey.generate("prefetched")]).start()
    yield server
    server.stop()


def settings_for(url: str, service_env: dict[str, str]) -> ServiceSettings:
    return ServiceSettings.from_environment({**service_env, "OAUTH_JWKS_URL": url})


def test_the_prefetched_key_set_serves_the_first_request(jwks: JwksServer, service_env: dict[str, str]) -> None:
    settings = settings_for(jwks.url, service_env)
    JwksPrefetch(settings).wait()
    assert jwks.fetches == 1
    caller = TokenValidator(settings).validate(jwks.keys[0].sign(access_token_claims()))
    assert caller.subject
    assert jwks.fetches == 1  # the validator used the prefetched set (same client, its cache)


def test_a_failed_prefetch_is_left_to_the_first_request(jwks: JwksServer, service_env: dict[str, str]) -> None:
    jwks.down = True
    settings = settings_for(jwks.url + "?outage", service_env)
    JwksPrefetch(settings).wait()  # no exception: init goes on
    client = jwks_client(
        settings.oauth_jwks_url, settings.oauth_jwks_cache_seconds, settings.oauth_jwks_cooldown_seconds
    )
    assert client.jwk_set_cache is not None and client.jwk_set_cache.get() is None
    jwks.down = False
    TokenValidator(settings).validate(jwks.keys[0].sign(access_token_claims()))  # fetched now
    assert jwks.fetches == 2
