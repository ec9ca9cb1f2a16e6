"""A private, throw-away MariaDB server for tests and benchmarks (the MySQL flavour of a PACS database).

Like `postgres.PostgresServer`: the data directory lives in a temporary directory (`mariadb-install-db`), the server
(`mariadbd`) listens on 127.0.0.1 only, on a free port, and on a Unix socket in that directory. The test user logs
in over TCP with a password, like a real PACS database; root (no password) is reachable only through the private
socket, to create users and databases. The system's own MariaDB service is never touched.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import pymysql

from weasis_link_dev.db_server import LoopbackDatabaseServer, free_loopback_port

__all__ = ["MariaDBServer", "MariaDBServerError"]

_ENSURE_PACKAGES = Path(__file__).resolve().parents[1] / "ensure-debian-packages"
_START_ATTEMPTS = 3  # a free port can be taken between probing it and the server binding it
_START_SECONDS = 60


class MariaDBServerError(RuntimeError):
    """The private server could not be created, started or stopped."""


def ensure_mariadb_installed() -> tuple[str, str]:
    """Install the Debian `mariadb-server` package when missing; return the paths of mariadb-install-db and mariadbd."""
    if shutil.which("mariadbd", path="/usr/sbin:/usr/bin") is None and _ENSURE_PACKAGES.exists():
        subprocess.run([str(_ENSURE_PACKAGES), "mariadb-server"], check=True)
    install_db = shutil.which("mariadb-install-db", path="/usr/bin:/usr/sbin")
    server = shutil.which("mariadbd", path="/usr/sbin:/usr/bin")
    if install_db is None or server is None:
        raise MariaDBServerError("mariadb-install-db / mariadbd not found (Debian package mariadb-server)")
    return install_db, server


class MariaDBServer(LoopbackDatabaseServer):
    """A private MariaDB server, started on `__enter__`, stopped and deleted on `__exit__`."""

    _DRIVER = "mysql+pymysql"
    _URL_QUERY: ClassVar[Mapping[str, str]] = {"charset": "utf8mb4"}
    _ERROR = MariaDBServerError

    # Set by start(); the constructor and the connection facts are the base class's.
    _process: subprocess.Popen[bytes] | None = None

    # -- connection facts ---------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def socket_path(self) -> Path:
        return self._dir / "mariadb.sock"

    # -- administration -----------------------------------------------------------------------------------------

    def root_connection(self, database: str | None = None) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """A root connection over the private Unix socket, autocommitting."""
        return pymysql.connect(
            unix_socket=str(self.socket_path),
            user="root",
            database=database,
            charset="utf8mb4",
            autocommit=True,
        )

    def create_database(self, name: str) -> str:
        """Create an empty utf8mb4 database the test user owns and return its SQLAlchemy URL."""
        conn = self.root_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                cur.execute(f"GRANT ALL ON `{name}`.* TO %s@'127.0.0.1'", (self._user,))
        finally:
            conn.close()
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        conn = self.root_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()

    # -- life cycle ---------------------------------------------------------------------------------------------

    def _as_root_flags(self) -> list[str]:
        # mariadbd refuses to run as root unless told to; as another user it runs as that user.
        return ["--user=root"] if os.geteuid() == 0 else []

    def start(self) -> None:
        if self._root is not None:
            raise MariaDBServerError("the server is already started")
        started = time.perf_counter()
        install_db, server = ensure_mariadb_installed()
        self._root = Path(tempfile.mkdtemp(prefix="weasis-mariadb-", dir=self._base_dir))
        atexit.register(self.stop)  # safety net when the context manager is never exited
        try:
            result = subprocess.run(
                [
                    install_db,
                    "--no-defaults",
                    f"--datadir={self._dir / 'data'}",
                    "--auth-root-authentication-method=normal",  # root, no password, socket only (skip-networking)
                    "--skip-test-db",
                    *self._as_root_flags(),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise MariaDBServerError(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")
            self._start_server(server)
            self._create_user_and_database()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started

    def _start_server(self, server: str) -> None:
        log = self._dir / "mariadb.log"
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_loopback_port()
            self._process = subprocess.Popen(
                [
                    server,
                    "--no-defaults",
                    f"--datadir={self._dir / 'data'}",
                    f"--socket={self.socket_path}",
                    f"--pid-file={self._dir / 'mariadb.pid'}",
                    f"--log-error={log}",
                    f"--port={port}",
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_bin",
                    # A throw-away server needs no durability; 2 shared cores need small buffers.
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-doublewrite=0",
                    "--innodb-file-per-table=0",  # one shared tablespace: the archive's ~60 tables create faster
                    "--innodb-buffer-pool-size=128M",
                    "--skip-log-bin",
                    "--max-connections=40",
                    *self._as_root_flags(),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready(port):
                self._port = port
                return
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
            self._terminate()
            if attempt == _START_ATTEMPTS or "Address already in use" not in tail:
                raise MariaDBServerError(f"mariadbd did not start:\n{tail}")

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                self.root_connection().close()
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except (pymysql.err.OperationalError, OSError):
                time.sleep(0.1)
        return False

    def _create_user_and_database(self) -> None:
        conn = self.root_connection()
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (self._user, self._password))
        finally:
            conn.close()
        self.create_database(self._database)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # mariadbd's clean shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server and delete its data; safe to call twice."""
        root, self._root = self._root, None
        atexit.unregister(self.stop)
        try:
            self._terminate()
        finally:
            self._port = None
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
