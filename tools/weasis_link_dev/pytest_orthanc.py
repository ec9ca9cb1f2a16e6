"""pytest plugin: real Orthanc PACS servers holding the synthetic datasets.

Enable with ``pytest_plugins = ["weasis_link_dev.pytest_orthanc"]`` (or ``-p weasis_link_dev.pytest_orthanc``).
All fixtures are session-scoped and lazy: a server starts the first time a test asks for it. A missing Orthanc is
installed (Debian packages) and started by the fixture, never skipped.

- ``orthanc``: no authentication, ``standard_dataset()`` loaded.
- ``orthanc_basic_auth``: same data, HTTP basic auth required (``BASIC_AUTH_USER`` / ``BASIC_AUTH_PASSWORD``).
- ``orthanc_bearer_factory``: ``(jwks_url, issuer, audience) -> OrthancServer`` with the standard dataset and
  bearer-token mode (403 without a valid RS256 JWT); one server per distinct argument triple.
- ``orthanc_large``: ``large_study(1000)`` and ``large_study(5000)`` in one server (benchmarks, one e2e test);
  ``LARGE_STUDY_SIZES`` lists the sizes, ``large_study(n)`` gives the records.

Tests using them talk to a real server: mark them ``@pytest.mark.integration``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from weasis_link_dev.orthanc import BearerTokenAuth, OrthancServer
from weasis_link_dev.synthetic_studies import large_study, standard_dataset

__all__ = [
    "BASIC_AUTH_PASSWORD",
    "BASIC_AUTH_USER",
    "LARGE_STUDY_SIZES",
    "orthanc",
    "orthanc_basic_auth",
    "orthanc_bearer_factory",
    "orthanc_large",
]

BASIC_AUTH_USER = "weasis"
# A throwaway loopback test PACS: a fixed value keeps failures reproducible.
BASIC_AUTH_PASSWORD = "weasis-link-test"  # noqa: S105
LARGE_STUDY_SIZES = (1000, 5000)

BearerFactory = Callable[[str, str, str], OrthancServer]


class _Servers:
    """Every server of the session. Teardown signals them all before waiting, so they stop in parallel (Orthanc
    needs ~3 s to stop) instead of one after the other."""

    def __init__(self) -> None:
        self.servers: list[OrthancServer] = []

    def start(self, server: OrthancServer) -> OrthancServer:
        server.start()
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.signal_stop()
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def _orthanc_servers() -> Iterator[_Servers]:
    servers = _Servers()
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture(scope="session")
def orthanc(_orthanc_servers: _Servers) -> OrthancServer:
    """Orthanc without authentication, holding ``standard_dataset()``."""
    return _orthanc_servers.start(OrthancServer(datasets=[standard_dataset()]))


@pytest.fixture(scope="session")
def orthanc_basic_auth(_orthanc_servers: _Servers) -> OrthancServer:
    """Orthanc requiring HTTP basic auth (``BASIC_AUTH_USER``/``BASIC_AUTH_PASSWORD``), holding the standard data."""
    return _orthanc_servers.start(
        OrthancServer(datasets=[standard_dataset()], users={BASIC_AUTH_USER: BASIC_AUTH_PASSWORD})
    )


@pytest.fixture(scope="session")
def orthanc_bearer_factory(_orthanc_servers: _Servers) -> BearerFactory:
    """``make(jwks_url, issuer, audience)``: Orthanc in bearer-token mode holding the standard data.

    The JWKS is fetched lazily by Orthanc (first token), so the identity provider may start after the server.
    """
    started: dict[tuple[str, str, str], OrthancServer] = {}

    def make(jwks_url: str, issuer: str, audience: str) -> OrthancServer:
        key = (jwks_url, issuer, audience)
        if key not in started:
            auth = BearerTokenAuth(jwks_url=jwks_url, issuer=issuer, audience=audience)
            started[key] = _orthanc_servers.start(OrthancServer(datasets=[standard_dataset()], bearer=auth))
        return started[key]

    return make


@pytest.fixture(scope="session")
def orthanc_large(_orthanc_servers: _Servers) -> OrthancServer:
    """Orthanc without authentication holding ``large_study(1000)`` and ``large_study(5000)`` (one study each)."""
    return _orthanc_servers.start(OrthancServer(datasets=[large_study(size) for size in LARGE_STUDY_SIZES]))
