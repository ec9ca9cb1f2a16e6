"""Fixtures shared by unit tests: the API function's handler (test_api_handler.py, test_launch_routes.py) and a JWKS
server on loopback (test_issuer_keys.py, test_trusted_issuers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from weasis_link.runtime import Runtime
from weasis_link.storage import ManifestStore
from weasis_link_dev.dev_keys import JwksServer, SigningKey
from weasis_link_dev.local_api import Handler


@pytest.fixture
def api(api_handler: Handler) -> Handler:
    """The API function's handler over the test's runtime (tests/conftest.py)."""
    return api_handler


@pytest.fixture
def store(runtime: Runtime) -> ManifestStore:
    """That runtime's manifest store (moto's in-process S3)."""
    return runtime.store


@pytest.fixture
def provider(key: SigningKey) -> Iterator[JwksServer]:
    """A JWKS server on loopback serving the module's `key` fixture."""
    server = JwksServer([key]).start()
    yield server
    server.stop()
