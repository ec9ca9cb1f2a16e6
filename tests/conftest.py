"""Shared fixtures. Service fixtures (Orthanc, PostgreSQL, node's oidc-provider) are imported here so every test layer shares one
session-scoped instance; they start only when a test asks for them, and install what is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from weasis_link_dev.dev_keys import DEV_AUDIENCE, DEV_ISSUER, DEV_SCOPE, JwksServer, SigningKey
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
from weasis_link_dev.pytest_stack import local_stack, local_stack_factory  # noqa: F401 - fixtures

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS = REPO_ROOT / "events"


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


# Hypothesis: `dev` for everyday runs, `full` (10,000 generated manifests) for `make test`.
settings.register_profile("dev", max_examples=300, deadline=None)
settings.register_profile("full", max_examples=10_000, deadline=None)
settings.load_profile("dev")
