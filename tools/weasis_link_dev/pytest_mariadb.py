"""pytest plugin: a private MariaDB server (Debian `mariadb-server`, installed when missing), one per session.

- `mariadb_server`: the running `MariaDBServer`; `create_database(name)` gives a fresh utf8mb4 database's URL.

Tests using it talk to a real server: mark them `@pytest.mark.integration`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from weasis_link_dev.mariadb import MariaDBServer

__all__ = ["mariadb_server"]


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    with MariaDBServer() as server:
        yield server
