"""Connector type DB: the PACS database, queried with the configured SELECT (SQLAlchemy Core).

The configured `select` returns one row per instance. It is wrapped as a subquery and the search criteria are
applied to its output columns only as bound parameters (expanding IN lists, LIKE patterns for wildcards): a
request value never becomes SQL text. weasis-pacs-connector concatenated IDs into SQL; this cannot.

The `*-column` settings name the columns the criteria are matched against: an output column of the select
(`patientId`), or, as in weasis-pacs-connector and ViewerHub configurations, the table column the select reads
(`p.pat_id`), which is resolved to the output column it is selected as (`p.pat_id AS patientId`).

SQL DATE / TIME / TIMESTAMP values (pg8000 returns date and time objects) become DICOM DA / TM in the study tree
(`dicom_values`); DICOM strings stored as text (dcm4chee-arc, SQLite) pass through unchanged.

An optional `patientPk` output column (the archive's key of the patient record) makes rows of one record that carry
several identifiers (dcm4chee-arc-light's `patient_id` table) one patient: the identifier first in (PatientID,
issuer) order among the rows answered is kept, so each query shows one deterministic identity.

When the database refuses the configured select, the log line names the archive, the driver's error class, the
SQL state and the server's message (which names the missing column or table), with bound values and the password
removed; the caller only reads "the configured select failed".

Drivers are imported by SQLAlchemy when the engine is created: pg8000 for PostgreSQL, PyMySQL for MySQL/MariaDB,
the standard library's sqlite3 for SQLite. JDBC URLs and driver class names from a weasis-pacs-connector or
ViewerHub configuration are translated.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from weasis_link import config as cfg
from weasis_link.connectors.base import QueryContext
from weasis_link.connectors.database_rows import add_answer
from weasis_link.connectors.database_select import (
    LIKE_ESCAPE,
    SUBQUERY,
    Atom,
    SelectColumns,
    checked_columns,
    conditions,
    probe_failure,
)
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable, ConfigurationError
from weasis_link.study_tree import StudyTreeBuilder

_JDBC_DRIVERS: Final = {
    "org.postgresql.driver": "postgresql+pg8000",
    "com.mysql.cj.jdbc.driver": "mysql+pymysql",
    "com.mysql.jdbc.driver": "mysql+pymysql",
    "org.mariadb.jdbc.driver": "mysql+pymysql",
    "org.sqlite.jdbc": "sqlite",
}
_DEFAULT_DRIVERS: Final = {"postgresql": "postgresql+pg8000", "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}

logger = logging.getLogger(__name__)


def sqlalchemy_url(db: cfg.DbConnectorConfig) -> URL:
    """The SQLAlchemy URL for a configured uri/driver/user/password (JDBC forms accepted)."""
    uri = db.uri.strip()
    if uri.startswith("jdbc:"):
        uri = uri[len("jdbc:") :]
        if uri.startswith("sqlite:"):
            path = uri[len("sqlite:") :]
            uri = "sqlite://" if path in ("", ":memory:") else f"sqlite:///{path}"
        else:
            uri = uri.split("?", 1)[0]  # JDBC options are driver-specific; ours come from the config keys
    try:
        url = make_url(uri)
    except ArgumentError:
        raise ConfigurationError("db-connector.uri is not a database URL") from None
    driver = (db.driver or "").strip()
    dialect = _JDBC_DRIVERS.get(driver.lower()) or driver or _DEFAULT_DRIVERS.get(url.drivername, url.drivername)
    url = url.set(drivername=dialect)
    if db.user:
        url = url.set(username=db.user)
    if db.password is not None:
        url = url.set(password=db.password.get_secret_value())
    return url


class DatabaseConnector:
    def __init__(self, connector_id: str, settings: cfg.DbConnectorConfig) -> None:
        self.connector_id = connector_id
        self.settings = settings
        self._url = sqlalchemy_url(settings)
        self._engine: Engine | None = None
        self._columns: SelectColumns | None = None
        self._lock = threading.Lock()
        # An in-memory SQLite database is one connection shared by every thread (StaticPool): queries on it must
        # take turns (the local stack serves requests concurrently; Lambda never does).
        self._single_connection: threading.Lock | None = None
        self.last_request_count = 0  # SQL statements of the last find (logs, benchmark)

    # --- the query ------------------------------------------------------------------------------------------
    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        engine, columns = self._prepare()
        statement = self.statement(criteria, columns)
        try:
            names, rows = self._fetch(engine, statement, context)
        except SQLAlchemyError as exc:
            raise self._archive_error(exc) from None
        add_answer(builder, columns, names, rows)

    def _fetch(
        self, engine: Engine, statement: sa.Select[Any], context: QueryContext
    ) -> tuple[list[str], Sequence[Any]]:
        """The answer's column names and rows. No ping before each query (a round trip): a pooled connection the
        server or the network dropped fails at once, and the query is sent again, once, on a fresh connection
        (SQLAlchemy has invalidated the dropped one). Only a select, so sending it twice changes nothing."""
        for attempt in (1, 2):
            timeout = max(0.5, min(self.settings.query_timeout_seconds, context.deadline - time.monotonic()))
            try:
                with self._single_connection or contextlib.nullcontext(), engine.connect() as conn:
                    self._apply_timeout(conn, timeout)
                    result = conn.execute(statement)
                    self.last_request_count = attempt
                    # The driver's rows as they come, read by position (database_rows.py): the select's columns are
                    # untyped, so SQLAlchemy would process nothing, only wrap each row (~4 ms for 5,000 rows).
                    with contextlib.closing(result):
                        return list(result.keys()), result.cursor.fetchall()  # a result's keys, not a dict's
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
                logger.info("archive '%s': the pooled connection was dropped, querying again", self.connector_id)
        raise AssertionError("unreachable")  # the loop returns or raises

    def statement(self, criteria: QueryCriteria, columns: SelectColumns) -> sa.Select[Any]:
        """SELECT * FROM (<configured select>) AS weasis_q WHERE <criteria as bound parameters>."""
        q = self.settings.query
        subquery = sa.text(q.select).columns(*(sa.column(c) for c in columns.names)).subquery(SUBQUERY)

        def atom(a: Atom) -> sa.ColumnElement[bool]:
            column = subquery.c[a.column]
            if a.op == "in":
                return column.in_(list(a.value))  # rendered as an expanding bound parameter
            if a.op == "like":
                return column.like(a.value, escape=LIKE_ESCAPE)
            return column == a.value

        where = [
            sa.or_(*(sa.and_(*map(atom, term)) if len(term) > 1 else atom(term[0]) for term in group))
            for group in conditions(criteria, q, columns)
        ]
        return sa.select(subquery).where(sa.and_(*where))

    # --- engine and column discovery --------------------------------------------------------------------------
    def _prepare(self) -> tuple[Engine, SelectColumns]:
        with self._lock:
            if self._engine is None:
                self._engine = self._create_engine()
            if self._columns is None:
                self._columns = self._discover_columns(self._engine)
            return self._engine, self._columns

    def _create_engine(self) -> Engine:
        url = self._url
        connect_timeout = self.settings.connect_timeout_seconds
        # No pre-ping (a round trip per query): _fetch sends the select again when a pooled connection was dropped.
        kwargs: dict[str, Any] = {"pool_recycle": 300}
        if url.get_backend_name() == "sqlite":
            kwargs.pop("pool_recycle")
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": connect_timeout}
            if url.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool  # one shared in-memory database for the container's life
                self._single_connection = threading.Lock()
        elif url.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"timeout": connect_timeout}
            kwargs |= {"pool_size": 2, "max_overflow": 2}
        elif url.get_backend_name() == "mysql":
            kwargs["connect_args"] = {"connect_timeout": int(connect_timeout), "charset": "utf8mb4"}
            kwargs |= {"pool_size": 2, "max_overflow": 2}
        try:
            engine = sa.create_engine(url, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise ConfigurationError(f"connector '{self.connector_id}': unsupported database URL ({exc})") from None
        if url.get_driver_name() == "pg8000":
            sa.event.listen(engine, "connect", _cache_pg8000_temporal_parsing)
        if self.settings.init_script:
            self._run_init_script(engine, Path(self.settings.init_script))
        return engine

    def _run_init_script(self, engine: Engine, script: Path) -> None:
        """Load a SQL script into a fresh SQLite database (the embedded sample archive)."""
        sql = script.read_text(encoding="utf-8")
        with engine.connect() as conn:
            # executescript runs a multi-statement script; only the sqlite3 driver has it.
            raw = cast(sqlite3.Connection, conn.connection.dbapi_connection)
            raw.executescript(sql)

    def _discover_columns(self, engine: Engine) -> SelectColumns:
        """The select's real output column names (drivers fold unquoted aliases differently), once per container."""
        try:
            with engine.connect() as conn:
                names = tuple(conn.execute(self._select_all().where(sa.false())).keys())
        except SQLAlchemyError as exc:
            raise self._archive_error(exc) from None
        return checked_columns(names, self.settings.query)

    def _select_all(self) -> sa.Select[Any]:
        """SELECT * FROM (<configured select>): column discovery and check-config's probe."""
        return sa.select(sa.text("*")).select_from(sa.text(f"({self.settings.query.select}) AS weasis_probe"))

    def probe(self, seconds: float) -> int:
        """For check-config: connect, run the configured select with LIMIT 1 (bounded by `seconds`), check its
        columns; the number of rows answered (0 or 1). The error says what the driver said (safe for a terminal:
        no bound value, no password)."""
        try:
            with self._lock:
                if self._engine is None:
                    self._engine = self._create_engine()
            with self._engine.connect() as conn:
                self._apply_timeout(conn, seconds)
                result = conn.execute(self._select_all().limit(1))
                names = tuple(result.keys())
                rows = len(result.all())
        except SQLAlchemyError as exc:
            password = self.settings.password.get_secret_value() if self.settings.password else None
            raise probe_failure(_archive_error(exc), driver_message(exc, password)) from None
        checked_columns(names, self.settings.query)
        return rows

    def _archive_error(self, exc: SQLAlchemyError) -> ArchiveError:
        """The error for the caller (no schema detail), after logging what the integrator needs to fix it."""
        error = _archive_error(exc)
        password = self.settings.password.get_secret_value() if self.settings.password else None
        logger.warning(
            "archive '%s': %s: %s",
            self.connector_id,
            error.detail,
            driver_message(exc, password),
            extra={"archive": self.connector_id, "kind": error.kind, "driver_error": _error_class(exc)},
        )
        return error

    @staticmethod
    def _apply_timeout(conn: sa.Connection, seconds: float) -> None:
        backend = conn.engine.url.get_backend_name()
        if backend == "postgresql":
            # Bound parameter, set for this transaction only (safe behind a transaction-pooling proxy).
            conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(int(seconds * 1000))})
        elif backend == "mysql":
            # A session variable: sent only when this pooled connection does not hold the value already (the
            # configured timeout, unless the request's deadline is nearer), not once per query.
            info = conn.connection.info
            if info.get(_SESSION_TIMEOUT) == seconds:
                return
            if getattr(conn.dialect, "is_mariadb", False):
                # MariaDB has no MAX_EXECUTION_TIME (error 1193): its own max_statement_time, in seconds.
                conn.execute(sa.text("SET SESSION max_statement_time = :s"), {"s": round(seconds, 3)})
            else:
                conn.execute(sa.text("SET SESSION MAX_EXECUTION_TIME = :ms"), {"ms": int(seconds * 1000)})
            info[_SESSION_TIMEOUT] = seconds


_SESSION_TIMEOUT: Final = "weasis_link.statement_timeout"  # key of a pooled MySQL connection's info: its timeout


# pg8000 parses every DATE / TIME / TIMESTAMP text with strptime (~20 µs each); a study's rows repeat the same few
# values thousands of times. Its own parsers, memoised per value: same results, a fraction of the time.
_PG8000_TEMPORAL_OIDS: Final = (1082, 1083, 1114, 1184)  # date, time, timestamp, timestamptz


def _cache_pg8000_temporal_parsing(dbapi_connection: Any, _connection_record: Any) -> None:
    parsers: dict[int, Callable[[str], object]] = dbapi_connection.pg_types
    for oid in _PG8000_TEMPORAL_OIDS:
        parser = parsers.get(oid)
        if parser is not None and not hasattr(parser, "cache_info"):
            dbapi_connection.register_in_adapter(oid, functools.lru_cache(maxsize=4096)(parser))


def _archive_error(exc: SQLAlchemyError) -> ArchiveError:
    """Database errors as archive errors; the message names the class, never the SQL or its parameters."""
    original = exc.orig if isinstance(exc, DBAPIError) else None
    code = _error_code(original)
    if code in _TIMEOUT_CODES or _caused_by(original, TimeoutError):
        return ArchiveTimeout("the database query timed out")
    if code in _CREDENTIAL_CODES:
        return ArchiveError("the database refused the configured credentials")
    if isinstance(code, int) and code < _MYSQL_CLIENT_ERRORS and code not in _MYSQL_SERVER_BUSY:
        # PyMySQL raises OperationalError for most server errors (1054 unknown column...): the select is at fault,
        # not the network (client-side errors, 2000 and up, are).
        return ArchiveError(f"the configured select failed ({type(original or exc).__name__})")
    if (
        isinstance(exc, OperationalError | InterfaceError)
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        or _caused_by(original, OSError)
    ):
        return ArchiveUnavailable(f"the database cannot be reached ({type(original or exc).__name__})")
    return ArchiveError(f"the configured select failed ({type(original or exc).__name__})")


def _error_class(exc: SQLAlchemyError) -> str:
    original = exc.orig if isinstance(exc, DBAPIError) else None
    return type(original or exc).__name__


def driver_message(exc: SQLAlchemyError, password: str | None = None) -> str:
    """The driver's error class, SQL state or error number and the server's message (which names the column or
    table), with every bound value and the password replaced by `?`: safe for our logs, never for the caller."""
    original = exc.orig if isinstance(exc, DBAPIError) else None
    args: tuple[object, ...] = tuple(getattr(original, "args", ()))
    if args and isinstance(args[0], dict):  # pg8000: the server's fields (C = SQLSTATE, M = message, H = hint)
        fields = args[0]
        text = f"SQLSTATE {fields.get('C')}: {fields.get('M')}"
        if fields.get("H"):
            text += f" (hint: {fields['H']})"
    elif len(args) >= 2 and isinstance(args[0], int):  # PyMySQL: (error number, message)
        text = f"error {args[0]}: {args[1]}"
    else:
        text = str(original or exc).split("\n", 1)[0]  # SQLAlchemy appends the SQL on later lines
    cause = original.__cause__ if original is not None else None
    if isinstance(cause, OSError):  # pg8000 hides "Connection refused" behind "Can't create a connection"
        text += f" ({cause.strerror or type(cause).__name__})"
    secrets = [password] if password else []
    params = exc.params if isinstance(exc, DBAPIError) else None
    secrets.extend(str(v) for v in _bound_values(params))
    for value in sorted({v for v in secrets if v}, key=len, reverse=True):
        if len(value) >= 3:
            text = text.replace(value, "?")
        else:  # a short value only where the server quotes it, so that words of the message survive
            for quote in ("'", '"'):
                text = text.replace(f"{quote}{value}{quote}", f"{quote}?{quote}")
    return f"{_error_class(exc)}: {text}"


def _bound_values(params: object) -> Iterable[object]:
    if isinstance(params, Mapping):
        params = list(params.values())
    if isinstance(params, list | tuple):
        for value in params:
            if isinstance(value, list | tuple | Mapping):
                yield from _bound_values(value)
            elif value is not None:
                yield value


# PostgreSQL query_canceled (what statement_timeout raises); MySQL max_execution_time exceeded; MariaDB
# max_statement_time exceeded.
_TIMEOUT_CODES: Final = frozenset({"57014", 3024, 1969})
# MySQL/MariaDB: client errors (can't connect, lost connection) from 2000 on; server errors that mean "busy or going
# away" rather than "this select is wrong" (too many connections, shutdown, lock wait timeout).
_MYSQL_CLIENT_ERRORS: Final = 2000
_MYSQL_SERVER_BUSY: Final = frozenset({1040, 1053, 1077, 1205, 1213})
# PostgreSQL invalid_password / invalid_authorization_specification; MySQL access denied.
_CREDENTIAL_CODES: Final = frozenset({"28P01", "28000", 1045})


def _error_code(original: BaseException | None) -> object:
    """The server's error code: SQLSTATE (pg8000 puts the server's fields in a dict) or MySQL's number."""
    args = getattr(original, "args", ())
    if args and isinstance(args[0], dict):
        return args[0].get("C")
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _caused_by(error: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether a socket-level error of `kind` is behind the driver's error (connect or read timeout, refused...)."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, kind):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False
