"""Shared fixtures. Service fixtures (Orthanc, PostgreSQL, MariaDB, node's oidc-provider) are imported here so every
test layer shares one session-scoped instance; they start only when a test asks for them, and install what is
missing.

`runtime` / `runtime_factory`: the composition root (weasis_link.runtime.build_runtime) over S3 faked in-process by
moto, building launches inline; the function handlers are made over it (`make_handler`), never patched."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from moto import mock_aws

from weasis_link.runtime import Runtime, build_runtime
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, s3_client
from weasis_link_dev.dev_keys import DEV_AUDIENCE, DEV_ISSUER, DEV_SCOPE, JwksServer, SigningKey
from weasis_link_dev.local_api import Handler
from weasis_link_dev.pytest_mariadb import mariadb_server  # noqa: F401 - fixtures
from weasis_link_dev.pytest_oidc import oidc_provider_factory  # noqa: F401 - fixture
from weasis_link_dev.pytest_orthanc import (  # noqa: F401 - fixtures
    _orthanc_servers,
    orthanc,
    orthanc_basic_auth,
    orthanc_bearer_factory,
    orthanc_large,
)
from weasis_link_dev.pytest_postgres import (  # noqa: F401 - fixtures
    postgres_database_factory,
    postgres_large_study,
    postgres_pacs,
    postgres_server,
)
from weasis_link_dev.pytest_stack import (  # noqa: F401 - fixtures
    audit_check_summary,
    audit_trail_check,
    local_stack,
    local_stack_factory,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS = REPO_ROOT / "events"
API_DIR = REPO_ROOT / "functions" / "api"
TEST_BUCKET = "weasis-link-test"
TEST_REGION = "eu-central-1"

RuntimeFactory = Callable[..., Runtime]


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate("test-key-1")


@pytest.fixture(scope="session")
def jwks_server(signing_key: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer([signing_key]).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service_env(jwks_server: JwksServer) -> dict[str, str]:
    """The function's environment as template.yaml sets it, pointing at test doubles."""
    return {
        "MANIFEST_BUCKET": "weasis-link-test",
        "OAUTH_ISSUER": DEV_ISSUER,
        "OAUTH_AUDIENCES": DEV_AUDIENCE,
        "OAUTH_JWKS_URL": jwks_server.url,
        "OAUTH_REQUIRED_SCOPES": DEV_SCOPE,
        "AWS_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "weasis-link",
        "POWERTOOLS_METRICS_NAMESPACE": "WeasisLink",
    }


@pytest.fixture
def manifest_store() -> Iterator[ManifestStore]:
    """An empty manifest bucket on S3 faked in-process by moto (for the length of the test)."""
    with mock_aws():
        client = s3_client(TEST_REGION)
        client.create_bucket(Bucket=TEST_BUCKET, CreateBucketConfiguration={"LocationConstraint": TEST_REGION})
        yield ManifestStore(client, TEST_BUCKET)


@pytest.fixture
def runtime_factory(service_env: dict[str, str], manifest_store: ManifestStore) -> RuntimeFactory:
    """Runtimes over the test's manifest bucket and the bundled connector YAML, unless the settings say otherwise;
    `overrides` are ServiceSettings fields."""
    base = ServiceSettings.from_environment(service_env)

    def make(**overrides: Any) -> Runtime:
        settings = base.model_copy(update=overrides) if overrides else base
        return build_runtime(API_DIR, settings, store=manifest_store, inline_builds=True)

    return make


@pytest.fixture
def runtime(runtime_factory: RuntimeFactory) -> Runtime:
    return runtime_factory()


@pytest.fixture(scope="session")
def function_modules(service_env: dict[str, str]) -> dict[str, Any]:
    """The API and builder function modules, imported (their cold start reads the environment) with service_env."""
    saved = dict(os.environ)
    os.environ.update(service_env)
    try:
        return {name: importlib.import_module(f"functions.{name}.app") for name in ("api", "builder")}
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def api_handler(function_modules: dict[str, Any], runtime: Runtime) -> Handler:
    """The API function's handler over the test's runtime."""
    handler: Handler = function_modules["api"].make_handler(runtime)
    return handler


@pytest.fixture
def builder_handler(function_modules: dict[str, Any], runtime: Runtime) -> Handler:
    """The builder function's handler over the test's runtime."""
    handler: Handler = function_modules["builder"].make_handler(runtime)
    return handler


# Hypothesis: `dev` for everyday runs, `full` (10,000 generated manifests) for `make test`.
settings.register_profile("dev", max_examples=300, deadline=None)
settings.register_profile("full", max_examples=10_000, deadline=None)
settings.load_profile("dev")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    line = audit_check_summary()  # the e2e audit check's cost to the run
    if line is not None:
        terminalreporter.write_line(line)
