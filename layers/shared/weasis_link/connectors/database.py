"""Connector type DB: the PACS database, queried with the configured SELECT (SQLAlchemy Core).

The configured `select` returns one row per instance. It is wrapped as a subquery and the search criteria are
applied to its output columns only as bound parameters (expanding IN lists, LIKE patterns for wildcards): a
request value never becomes SQL text. weasis-pacs-connector concatenated IDs into SQL; this cannot.

Drivers are imported by SQLAlchemy when the engine is created: pg8000 for PostgreSQL, PyMySQL for MySQL/MariaDB,
the standard library's sqlite3 for SQLite. JDBC URLs and driver class names from a weasis-pacs-connector or
ViewerHub configuration are translated.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from weasis_link import config as cfg
from weasis_link.connectors.base import QueryContext
from weasis_link.criteria import PatientIdentifier, QueryCriteria
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable, ConfigurationError
from weasis_link.study_tree import ALL_KEYWORDS, StudyTreeBuilder

# Output column names we recognise, folded (lower case, no underscores) -> DICOM keyword. The seed's names
# (patientId, serieInstanceUid...) and snake_case variants all fold to these.
_COLUMN_KEYWORDS: Final = {k.lower(): k for k in ALL_KEYWORDS} | {
    "patientbirthdate": "PatientBirthDate",
    "issuerofpatientid": "IssuerOfPatientID",
    "studyinstanceuid": "StudyInstanceUID",
    "serieinstanceuid": "SeriesInstanceUID",
    "seriesinstanceuid": "SeriesInstanceUID",
    "sopinstanceuid": "SOPInstanceUID",
    "sopclassuid": "SOPClassUID",
    "studyid": "StudyID",
    "referringphysicianname": "ReferringPhysicianName",
}
_JDBC_DRIVERS: Final = {
    "org.postgresql.driver": "postgresql+pg8000",
    "com.mysql.cj.jdbc.driver": "mysql+pymysql",
    "com.mysql.jdbc.driver": "mysql+pymysql",
    "org.mariadb.jdbc.driver": "mysql+pymysql",
    "org.sqlite.jdbc": "sqlite",
}
_DEFAULT_DRIVERS: Final = {"postgresql": "postgresql+pg8000", "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}
_LIKE_ESCAPE: Final = "\\"


def _fold(name: str) -> str:
    return name.replace("_", "").lower()


def sqlalchemy_url(db: cfg.DbConnector) -> URL:
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


class SelectColumns:
    """The configured select's output columns and the DICOM keyword each one carries."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.keywords: dict[str, str] = {}
        seen: set[str] = set()
        for name in names:
            keyword = _COLUMN_KEYWORDS.get(_fold(name))
            if keyword is not None and keyword not in seen:
                self.keywords[name] = keyword
                seen.add(keyword)

    def find(self, config_name: str | None) -> str | None:
        """The output column a key-column setting names (matched case- and underscore-insensitively)."""
        if config_name is None:
            return None
        return next((n for n in self.names if _fold(n) == _fold(config_name)), None)


class DatabaseConnector:
    def __init__(self, connector_id: str, settings: cfg.DbConnector) -> None:
        self.connector_id = connector_id
        self._settings = settings
        self._url = sqlalchemy_url(settings)
        self._engine: Engine | None = None
        self._columns: SelectColumns | None = None
        self._lock = threading.Lock()

    # --- the query ------------------------------------------------------------------------------------------
    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        engine, columns = self._prepare()
        statement = self.statement(criteria, columns)
        keyword_by_column = columns.keywords
        timeout = max(0.5, min(self._settings.query_timeout_seconds, context.deadline - time.monotonic()))
        try:
            with engine.connect() as conn:
                self._apply_timeout(conn, timeout)
                result = conn.execute(statement)
                names = list(result.keys())
                for row in result:
                    builder.add_instance({keyword_by_column.get(n, n): v for n, v in zip(names, row, strict=True)})
        except SQLAlchemyError as exc:
            raise _archive_error(exc) from None

    def statement(self, criteria: QueryCriteria, columns: SelectColumns) -> sa.Select[Any]:
        """SELECT * FROM (<configured select>) AS weasis_q WHERE <criteria as bound parameters>."""
        q = self._settings.query
        subquery = sa.text(q.select).columns(*(sa.column(c) for c in columns.names)).subquery("weasis_q")

        def col(config_name: str | None) -> sa.ColumnElement[Any] | None:
            name = columns.find(config_name)
            return subquery.c[name] if name is not None else None

        conditions: list[sa.ColumnElement[bool]] = []
        if criteria.patients:
            pid = col(q.patient_id_column)
            issuer = col(q.issuer_of_patient_id_column)
            assert pid is not None  # checked when the columns were discovered
            conditions.append(sa.or_(*(_patient_condition(p, pid, issuer) for p in criteria.patients)))
        for values, config_name in (
            (criteria.study_uids, q.study_instance_uid_column),
            (criteria.series_uids, q.serie_instance_uid_column),
            (criteria.object_uids, q.sop_instance_uid_column),
            (criteria.accession_numbers, q.accession_number_column),
        ):
            if values:
                column = col(config_name)
                if column is None:
                    raise ArchiveError(f"the configured select has no column '{config_name}'", "bad-response")
                conditions.append(_values_condition(values, column))
        return sa.select(subquery).where(sa.and_(*conditions))

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
        connect_timeout = self._settings.connect_timeout_seconds
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 300}
        if url.get_backend_name() == "sqlite":
            kwargs.pop("pool_recycle")
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": connect_timeout}
            if url.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool  # one shared in-memory database for the container's life
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
        if self._settings.init_script:
            self._run_init_script(engine, Path(self._settings.init_script))
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
        probe = sa.select(sa.text("*")).select_from(sa.text(f"({self._settings.query.select}) AS weasis_probe"))
        try:
            with engine.connect() as conn:
                names = tuple(conn.execute(probe.where(sa.false())).keys())
        except SQLAlchemyError as exc:
            raise _archive_error(exc) from None
        columns = SelectColumns(names)
        missing = [
            k
            for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            if k not in columns.keywords.values()
        ]
        if missing:
            raise ArchiveError(f"the configured select returns no column for {', '.join(missing)}", "bad-response")
        q = self._settings.query
        for config_name in (
            q.patient_id_column,
            q.study_instance_uid_column,
            q.serie_instance_uid_column,
            q.sop_instance_uid_column,
        ):
            if columns.find(config_name) is None:
                raise ArchiveError(f"the configured select has no column '{config_name}'", "bad-response")
        return columns

    @staticmethod
    def _apply_timeout(conn: sa.Connection, seconds: float) -> None:
        backend = conn.engine.url.get_backend_name()
        if backend == "postgresql":
            # Bound parameter, set for this transaction only.
            conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(int(seconds * 1000))})
        elif backend == "mysql":
            conn.execute(sa.text("SET SESSION MAX_EXECUTION_TIME = :ms"), {"ms": int(seconds * 1000)})


def _like_pattern(value: str) -> str:
    """DICOM wildcards (* ?) to a LIKE pattern, with LIKE's own % _ and the escape character escaped."""
    out = []
    for c in value:
        if c in ("%", "_", _LIKE_ESCAPE):
            out.append(_LIKE_ESCAPE + c)
        elif c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        else:
            out.append(c)
    return "".join(out)


def _values_condition(values: tuple[str, ...], column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    exact = [v for v in values if not re.search(r"[*?]", v)]
    patterns = [v for v in values if re.search(r"[*?]", v)]
    parts: list[sa.ColumnElement[bool]] = []
    if exact:
        parts.append(column.in_(exact))  # rendered as an expanding bound parameter
    parts.extend(column.like(_like_pattern(p), escape=_LIKE_ESCAPE) for p in patterns)
    return sa.or_(*parts)


def _patient_condition(
    patient: PatientIdentifier, pid: sa.ColumnElement[Any], issuer: sa.ColumnElement[Any] | None
) -> sa.ColumnElement[bool]:
    condition = _values_condition((patient.patient_id,), pid)
    if patient.issuer is not None and issuer is not None:
        # Without an issuer column, the service's restrict() still drops other issuers' studies.
        condition = sa.and_(condition, issuer == patient.issuer)
    return condition


def _archive_error(exc: SQLAlchemyError) -> ArchiveError:
    """Database errors as archive errors; the message names the class, never the SQL or its parameters."""
    original = exc.orig if isinstance(exc, DBAPIError) else None
    text = str(original or "").lower()
    if "timeout" in text or "canceling statement" in text or "max_execution_time" in text:
        return ArchiveTimeout("the database query timed out")
    if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return ArchiveUnavailable(f"the database cannot be reached ({type(original or exc).__name__})")
    return ArchiveError(f"the database refused the query ({type(original or exc).__name__})")
