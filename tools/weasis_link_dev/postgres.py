"""A private, throw-away PostgreSQL cluster for tests and benchmarks.

The cluster lives in a temporary directory, listens on 127.0.0.1 only (on a free port) and on a Unix socket in
that directory. The test role logs in over TCP with a scram-sha-256 password, like a real PACS database; the
superuser ("postgres") is reachable only through the private socket (trust), to create roles and databases.
The system's own cluster is never touched: it may not exist, or may be running on 5432.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import pg8000.native

from weasis_link_dev.db_server import LoopbackDatabaseServer, free_loopback_port

__all__ = ["PostgresServer", "PostgresServerError", "find_postgres_bindir"]

_POSTGRES_LIB = Path("/usr/lib/postgresql")
_ENSURE_PACKAGES = Path(__file__).resolve().parents[1] / "ensure-debian-packages"
_SUPERUSER = "postgres"
_START_ATTEMPTS = 3  # a free port can be taken between probing it and the postmaster binding it


class PostgresServerError(RuntimeError):
    """The private cluster could not be created, started or stopped."""


def find_postgres_bindir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin holding pg_ctl; `WEASIS_PG_BINDIR` overrides it."""
    override = os.environ.get("WEASIS_PG_BINDIR")
    if override:
        return Path(override)
    candidates = [
        path.parent
        for path in _POSTGRES_LIB.glob("*/bin/pg_ctl")
        if path.parent.parent.name.isdigit()  # skip anything that is not a major version directory
    ]
    if not candidates:
        raise PostgresServerError(f"no PostgreSQL server binaries under {_POSTGRES_LIB}/<major>/bin")
    return max(candidates, key=lambda bindir: int(bindir.parent.name))


def ensure_postgres_installed() -> Path:
    """Install the Debian `postgresql` package when missing (CI starts bare), then return the binaries' directory."""
    if _ENSURE_PACKAGES.exists():
        subprocess.run([str(_ENSURE_PACKAGES), "postgresql"], check=True)
    return find_postgres_bindir()


class PostgresServer(LoopbackDatabaseServer):
    """A private PostgreSQL cluster, started on `__enter__`, stopped and deleted on `__exit__`.

    Usage::

        with PostgresServer() as pg:
            engine = sqlalchemy.create_engine(pg.sqlalchemy_url)
    """

    _DRIVER = "postgresql+pg8000"
    _ERROR = PostgresServerError

    # Set by start(); the constructor and the connection facts are the base class's.
    _bindir: Path | None = None

    # -- connection facts ---------------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self._dir

    @property
    def running(self) -> bool:
        return self._port is not None

    # -- administration -----------------------------------------------------------------------------------------

    def superuser_connection(self, database: str = "postgres") -> pg8000.native.Connection:
        """A superuser connection over the private Unix socket (trust), for setup and for inspecting the server."""
        return pg8000.native.Connection(
            _SUPERUSER,
            database=database,
            unix_sock=str(self._dir / f".s.PGSQL.{self.port}"),
        )

    def create_database(self, name: str) -> str:
        """Create an empty UTF-8 database owned by the test role and return its SQLAlchemy URL."""
        conn = self.superuser_connection()
        try:
            # CREATE DATABASE cannot run in a transaction: pg8000.native autocommits each statement.
            conn.run(
                f"CREATE DATABASE {pg8000.native.identifier(name)} OWNER {pg8000.native.identifier(self._user)}"
                " ENCODING 'UTF8' TEMPLATE template0"
            )
        finally:
            conn.close()
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        conn = self.superuser_connection()
        try:
            conn.run(f"DROP DATABASE IF EXISTS {pg8000.native.identifier(name)} WITH (FORCE)")
        finally:
            conn.close()

    # -- life cycle ---------------------------------------------------------------------------------------------

    def _as_postgres(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        # initdb and postgres refuse to run as root: drop to the `postgres` OS user the Debian package creates.
        command = [str(arg) for arg in argv]
        if os.geteuid() == 0:
            return ["runuser", "-u", _SUPERUSER, "--", *command]
        return command

    def _run(self, argv: Sequence[str | os.PathLike[str]], what: str) -> None:
        result = subprocess.run(self._as_postgres(argv), capture_output=True, text=True, cwd=self._dir, check=False)
        if result.returncode != 0:
            raise PostgresServerError(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        if self._root is not None:
            raise PostgresServerError("the server is already started")
        started = time.perf_counter()
        self._bindir = ensure_postgres_installed()
        self._root = Path(tempfile.mkdtemp(prefix="weasis-pg-", dir=self._base_dir))
        atexit.register(self.stop)  # safety net when the context manager is never exited (Ctrl-C, crash)
        try:
            if os.geteuid() == 0:
                shutil.chown(self._root, user=_SUPERUSER, group=_SUPERUSER)
            self._initdb()
            self._start_postmaster()
            self._create_role_and_database()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started

    def _initdb(self) -> None:
        assert self._bindir is not None
        self._run(
            [
                self._bindir / "initdb",
                "--pgdata",
                self.data_dir,
                "--username",
                _SUPERUSER,
                "--encoding",
                "UTF8",
                "--locale",
                "C",  # always present, unlike C.UTF-8 or en_US.UTF-8; byte order is fine for tests
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--no-sync",  # a throw-away cluster does not need to survive a power cut
                "--no-instructions",
            ],
            "initdb",
        )
        # Exactly two ways in: the superuser through the private socket, everyone over loopback TCP with a
        # scram-sha-256 password (no trust over TCP, no IPv6, no replication).
        (self.data_dir / "pg_hba.conf").write_text(
            "# weasis-link private test cluster\n"
            "local   all   all                 trust\n"
            "host    all   all   127.0.0.1/32  scram-sha-256\n",
            encoding="utf-8",
        )

    def _write_runtime_config(self, port: int) -> None:
        settings = {
            "port": str(port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self._dir}'",
            "unix_socket_permissions": "0700",
            "password_encryption": "'scram-sha-256'",
            "timezone": "'UTC'",
            "max_connections": "30",
            "shared_buffers": "32MB",
            # Durability is pointless for a cluster deleted after the run, and costs time on 2 shared cores.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        body = "".join(f"{key} = {value}\n" for key, value in settings.items())
        (self.data_dir / "postgresql.auto.conf").write_text(body, encoding="utf-8")

    def _start_postmaster(self) -> None:
        assert self._bindir is not None
        log = self._dir / "postgres.log"
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_loopback_port()
            self._write_runtime_config(port)
            result = subprocess.run(
                self._as_postgres(
                    [self._bindir / "pg_ctl", "start", "--pgdata", self.data_dir, "--log", log, "--wait", "-t", "60"]
                ),
                capture_output=True,
                text=True,
                cwd=self._dir,
                check=False,
            )
            if result.returncode == 0:
                self._port = port
                return
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
            if attempt == _START_ATTEMPTS or "could not bind" not in tail:
                raise PostgresServerError(f"pg_ctl start failed:\n{result.stdout}\n{result.stderr}\n{tail}")

    def _create_role_and_database(self) -> None:
        conn = self.superuser_connection()
        try:
            conn.run(
                f"CREATE ROLE {pg8000.native.identifier(self._user)} LOGIN"
                f" PASSWORD {pg8000.native.literal(self._password)}"
            )
        finally:
            conn.close()
        self.create_database(self._database)

    def stop(self) -> None:
        """Stop the postmaster (fast shutdown) and delete the cluster; safe to call twice."""
        root, self._root = self._root, None
        atexit.unregister(self.stop)
        if root is None:
            return
        try:
            data = root / "data"
            if self._bindir is not None and (data / "postmaster.pid").exists():
                stopped = subprocess.run(
                    self._as_postgres([self._bindir / "pg_ctl", "stop", "--pgdata", data, "-m", "fast", "--wait"]),
                    capture_output=True,
                    check=False,
                    cwd=root,
                )
                if stopped.returncode != 0:
                    _kill_postmaster(data / "postmaster.pid")
        finally:
            self._port = None
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


def _kill_postmaster(pid_file: Path) -> None:
    # Last resort when pg_ctl cannot stop it: SIGQUIT is PostgreSQL's "immediate shutdown".
    try:
        pid = int(pid_file.read_text(encoding="utf-8").splitlines()[0])
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError, IndexError):
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
