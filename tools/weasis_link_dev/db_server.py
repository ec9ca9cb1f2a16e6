"""What the private database servers (postgres.PostgresServer, mariadb.MariaDBServer) share: the connection facts
of a throw-away server on a free loopback port, a test user with a password, a default database, and the SQLAlchemy
URL of any of its databases. Each server adds how it is created, started and administered."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from sqlalchemy.engine import URL

__all__ = ["LoopbackDatabaseServer", "free_loopback_port"]


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LoopbackDatabaseServer:
    """Connection facts; `_port` is set while the server runs, `_root` is its temporary directory."""

    _DRIVER: ClassVar[str]  # the SQLAlchemy dialect+driver of the test user's URLs
    _URL_QUERY: ClassVar[Mapping[str, str]] = {}
    _ERROR: ClassVar[type[RuntimeError]] = RuntimeError  # the server's own error class

    def __init__(
        self,
        *,
        user: str = "weasis",
        password: str | None = None,
        database: str = "pacs",
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._user = user
        self._password = password if password is not None else secrets.token_urlsafe(18)
        self._database = database
        self._base_dir = base_dir
        self._port: int | None = None
        self._root: Path | None = None
        self.start_seconds: float | None = None
        """Wall-clock time of `start()` (create, start, user and database), for benchmarks' reports."""

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._port is None:
            raise self._ERROR("the server is not running")
        return self._port

    @property
    def user(self) -> str:
        return self._user

    @property
    def password(self) -> str:
        return self._password

    @property
    def database(self) -> str:
        return self._database

    @property
    def sqlalchemy_url(self) -> str:
        """The SQLAlchemy URL of the default database, as the test user."""
        return self.url_for(self._database)

    def url_for(self, database: str) -> str:
        """The SQLAlchemy URL of a database of this server, as the test user (password included)."""
        url = URL.create(
            self._DRIVER,
            username=self._user,
            password=self._password,
            host=self.host,
            port=self.port,
            database=database,
            query=dict(self._URL_QUERY),
        )
        return url.render_as_string(hide_password=False)

    @property
    def _dir(self) -> Path:
        if self._root is None:
            raise self._ERROR("the server has not been started")
        return self._root
