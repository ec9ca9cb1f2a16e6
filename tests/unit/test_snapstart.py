"""SnapStart: the hooks the API function registers with `snapshot_restore_py` (the registry Lambda's runtime runs
after restoring a snapshot) rebuild everything a snapshot must not carry over: the JWKS client and its cache, the S3
and Lambda clients, the connectors' urllib3 pools and token providers, and the secrets resolved at cold start."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import snapshot_restore_py

from weasis_link import oauth_client
from weasis_link.config import ClientCredentialsConfig
from weasis_link.issuer_keys import IssuerKeys
from weasis_link.storage import aws_session
from weasis_link.upstream_retry import tls_context


def restore(module: ModuleType) -> int:
    """Runs the module's after-restore hooks as the runtime does; how many there were."""
    hooks = [(f, a, k) for f, a, k in snapshot_restore_py.get_after_restore() if f.__module__ == module.__name__]
    for hook, args, kwargs in hooks:
        hook(*args, **kwargs)
    return len(hooks)


@pytest.fixture
def api(service_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The API module on a DICOMweb configuration whose BASIC password is a secret reference (env:)."""
    config = tmp_path / "weasis-link.yaml"
    authentication = {"type": "BASIC", "login": "viewer", "password": "env:PACS_PASSWORD"}
    connector = {"url": "http://127.0.0.1:9/dicom-web", "authentication": authentication}
    pacs = {"type": "DICOM_WEB", "dicom-web-connector": connector}
    config.write_text(json.dumps({"wado": {"url": "http://127.0.0.1:9/wado"}, "connector": {"config": {"pacs": pacs}}}))
    for name, value in {**service_env, "WEASIS_LINK_CONFIG": str(config), "PACS_PASSWORD": "before"}.items():
        monkeypatch.setenv(name, value)
    # Lambda's environment: the dispatcher then invokes the builder through a Lambda client.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "weasis-link-api")
    monkeypatch.setenv("BUILDER_FUNCTION_NAME", "weasis-link-builder")
    monkeypatch.setenv("AUDIT_EVENT_BUS", "weasis-link-audit")  # its client is made at Init, on a thread
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTS", "http://127.0.0.1:9")  # never called here
    module = importlib.import_module("functions.api.app")
    restore(module)  # the module may have been imported by another test: start from this environment
    yield module
    monkeypatch.undo()
    with pytest.MonkeyPatch.context() as usual:  # leave it built from the tests' usual environment
        for name, value in service_env.items():
            usual.setenv(name, value)
        restore(module)


def password(module: ModuleType) -> str:
    authentication = module.runtime.config.connector.config["pacs"].dicom_web_connector.authentication
    return str(authentication.password.get_secret_value())


def test_the_api_function_registers_one_after_restore_hook(api: ModuleType) -> None:
    assert restore(api) == 1


def prefetched_at(keys: IssuerKeys) -> float:
    """When the key set the issuer's client caches was fetched (monotonic clock), once the prefetch is over."""
    if keys._prefetch is not None:
        keys._prefetch.join()
    cache = keys.client().jwk_set_cache
    assert cache is not None and cache.jwk_set_with_timestamp is not None
    return cache.jwk_set_with_timestamp.get_timestamp()


def test_restore_rebuilds_clients_caches_pools_and_secrets(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    validator = api.runtime.validator
    [(_, keys)] = validator._issuers._entries
    jwks = keys.client()
    fetched = prefetched_at(keys)  # fetched on a thread at Init and cached
    tls = tls_context()
    session = aws_session()
    s3 = api.runtime.store._s3
    lambda_client = api.runtime.dispatcher._client
    sink = api.runtime.audit.sink
    events = sink._events()  # made at Init (or now, if its thread has not yet run)
    pool = api.runtime.service.archives._connector("pacs")._http
    handler = api._handler
    provider = oauth_client.shared_token_provider(
        ClientCredentialsConfig(token_url="https://idp.example/token", client_id="c", client_secret="s")
    )
    assert password(api) == "before"
    monkeypatch.setenv("PACS_PASSWORD", "rotated")  # rotated while the snapshot waited

    restore(api)

    runtime = api.runtime
    assert runtime.validator is not validator
    [(_, keys)] = runtime.validator._issuers._entries
    assert keys.client() is not jwks  # a new JWKS client: its cache (monotonic timestamps) is new
    assert prefetched_at(keys) > fetched  # fetched again, after the restore, by the new runtime's prefetch
    assert keys._http is not jwks._http  # and through a new pool
    assert tls_context() is not tls
    assert aws_session() is not session  # and its credentials resolved again
    assert runtime.store._s3 is not s3
    assert runtime.dispatcher._client is not lambda_client
    assert runtime.audit.sink is not sink and runtime.audit.sink._events() is not events  # the audit client too
    assert runtime.service.archives._connector("pacs")._http is not pool
    # Lambda keeps the entry point it imported at init: lambda_handler stays, what it calls is the new runtime's.
    assert api._handler is not handler
    assert (
        oauth_client.shared_token_provider(
            ClientCredentialsConfig(token_url="https://idp.example/token", client_id="c", client_secret="s")
        )
        is not provider
    )
    assert password(api) == "rotated"  # the secret reference resolved again
