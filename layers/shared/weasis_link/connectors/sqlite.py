"""Connector type DB on SQLite (the embedded sample archive, `make run`'s default): the standard library's sqlite3.

The same select and criteria as the SQL connector (`database_select` builds both), rendered with sqlite3's `?`
parameters: a request value never becomes SQL text. SQLAlchemy is not needed to ask SQLite, and importing it
costs about 110 ms of a cold start.

Database URLs: `sqlite://` and `sqlite:///:memory:` (one in-memory database for the container's life, loaded from
`init-script`), `sqlite:///relative/path`, `sqlite:////absolute/path`, and JDBC's `jdbc:sqlite:<path>`. A URL with
query options goes to the SQL connector, which hands them to SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from weasis_link import config as cfg
from weasis_link.connectors import database_select as shared  # the select building the SQL connector uses too
from weasis_link.connectors.base import QueryContext
from weasis_link.connectors.database_rows import add_answer
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable
from weasis_link.study_tree import StudyTreeBuilder

MEMORY: Final = ":memory:"
_SCHEMES: Final = ("sqlite:///", "sqlite+pysqlite:///", "sqlite://", "sqlite+pysqlite://")
# SQLite's own words for "cannot open or use the file", as opposed to a select it cannot run.
_UNAVAILABLE: Final = ("unable to open", "locked", "busy", "disk i/o", "not a database", "readonly")
_PROGRESS_STEPS: Final = 10_000  # SQLite virtual-machine steps between two deadline checks (well under 1 ms)

logger = logging.getLogger(__name__)


def sqlite_database(db: cfg.DbConnectorConfig) -> str | None:
    """The database file (or `:memory:`) a configured URI names, or None when the SQL connector must take it."""
    uri = db.uri.strip()
    if uri.startswith("jdbc:sqlite:"):
        path = uri[len("jdbc:sqlite:") :]
        return MEMORY if path in ("", MEMORY) else path
    if "?" in uri:
        return None
    for scheme in _SCHEMES:
        if uri.startswith(scheme):
            path = uri[len(scheme) :]
            return MEMORY if path in ("", MEMORY) else path
    return None


class SqliteConnector:
    def __init__(self, connector_id: str, settings: cfg.DbConnectorConfig) -> None:
        database = sqlite_database(settings)
        if database is None:
            raise ValueError(f"connector '{connector_id}': not a SQLite URL")
        self.connector_id = connector_id
        self.settings = settings
        self._database = database
        self._connection: sqlite3.Connection | None = None
        self._columns: shared.SelectColumns | None = None
        # One connection for the container's life (an in-memory database lives in it): queries take turns (the local
        # stack serves requests concurrently; Lambda never does).
        self._lock = threading.Lock()
        self.last_request_count = 0  # SQL statements of the last find (logs, benchmark)

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        timeout = max(0.5, min(self.settings.query_timeout_seconds, context.deadline - time.monotonic()))
        with self._lock:
            try:
                conn = self._connect()
                columns = self._discover_columns(conn)
                sql, params = self.statement(criteria, columns)
                with _deadline(conn, timeout):
                    cursor = conn.execute(sql, params)
                    rows: Sequence[Any] = cursor.fetchall()
            except sqlite3.Error as exc:
                raise self._archive_error(exc) from None
        self.last_request_count = 1
        add_answer(builder, columns, [d[0] for d in cursor.description], rows)

    def statement(self, criteria: QueryCriteria, columns: shared.SelectColumns) -> tuple[str, list[str]]:
        """SELECT * FROM (<configured select>) AS weasis_q WHERE <criteria as `?` parameters>, and the parameters."""
        params: list[str] = []

        def atom(a: shared.Atom) -> str:
            column = f"{shared.SUBQUERY}.{_quoted(a.column)}"
            if a.op == "in":
                params.extend(a.value)
                return f"{column} IN ({', '.join('?' * len(a.value))})"
            assert isinstance(a.value, str)
            params.append(a.value)
            return f"{column} LIKE ? ESCAPE '{shared.LIKE_ESCAPE}'" if a.op == "like" else f"{column} = ?"

        where = [
            "(" + " OR ".join("(" + " AND ".join(map(atom, term)) + ")" for term in group) + ")"
            for group in shared.conditions(criteria, self.settings.query, columns)
        ]
        # Only configuration (the select) and the database's own column names are SQL text; values are parameters.
        sql = f"SELECT * FROM ({self.settings.query.select}) AS {shared.SUBQUERY}"  # noqa: S608
        return (f"{sql} WHERE {' AND '.join(where)}" if where else sql), params

    def probe(self, seconds: float) -> int:
        """For check-config: run the configured select with LIMIT 1 (bounded by `seconds`), check its columns; the
        number of rows answered (0 or 1). The error says what SQLite said (no bound value)."""
        with self._lock:
            try:
                conn = self._connect()
                with _deadline(conn, seconds):
                    cursor = conn.execute(f"{self._select_all()} LIMIT 1")
                    rows = len(cursor.fetchall())
            except sqlite3.Error as exc:
                raise shared.probe_failure(_archive_error(exc), f"{type(exc).__name__}: {exc}") from None
        shared.checked_columns(tuple(d[0] for d in cursor.description), self.settings.query)
        return rows

    # --- connection and column discovery ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            conn = sqlite3.connect(
                self._database, timeout=self.settings.connect_timeout_seconds, check_same_thread=False
            )
            try:
                if self.settings.init_script:
                    conn.executescript(Path(self.settings.init_script).read_text(encoding="utf-8"))
            except BaseException:
                conn.close()
                raise
            self._connection = conn
        return self._connection

    def _discover_columns(self, conn: sqlite3.Connection) -> shared.SelectColumns:
        """The select's output column names, once per container."""
        if self._columns is None:
            cursor = conn.execute(f"{self._select_all()} WHERE 0")
            self._columns = shared.checked_columns(tuple(d[0] for d in cursor.description), self.settings.query)
        return self._columns

    def _select_all(self) -> str:
        """SELECT * FROM (<configured select>): column discovery and check-config's probe (configuration only)."""
        return f"SELECT * FROM ({self.settings.query.select}) AS weasis_probe"  # noqa: S608

    def _archive_error(self, exc: sqlite3.Error) -> ArchiveError:
        """The error for the caller (no schema detail), after logging what the integrator needs to fix it: SQLite's
        message names a column or table, never a bound value."""
        error = _archive_error(exc)
        logger.warning(
            "archive '%s': %s: %s: %s",
            self.connector_id,
            error.detail,
            type(exc).__name__,
            exc,
            extra={"archive": self.connector_id, "kind": error.kind, "driver_error": type(exc).__name__},
        )
        return error


@contextlib.contextmanager
def _deadline(conn: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """SQLite interrupts the statement once `seconds` have passed (sqlite3.OperationalError: interrupted)."""
    until = time.monotonic() + seconds
    conn.set_progress_handler(lambda: time.monotonic() > until, _PROGRESS_STEPS)
    try:
        yield
    finally:
        conn.set_progress_handler(None, 0)


def _quoted(name: str) -> str:
    """An identifier for SQLite: the name the database itself gave a column of the configured select."""
    return '"' + name.replace('"', '""') + '"'


def _archive_error(exc: sqlite3.Error) -> ArchiveError:
    message = str(exc).lower()
    if message == "interrupted":
        return ArchiveTimeout("the database query timed out")
    if any(words in message for words in _UNAVAILABLE):
        return ArchiveUnavailable(f"the database cannot be reached ({type(exc).__name__})")
    return ArchiveError(f"the configured select failed ({type(exc).__name__})")
