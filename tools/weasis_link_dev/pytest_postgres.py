"""pytest plugin: a private PostgreSQL cluster holding the synthetic PACS database.

Enable with `pytest_plugins = ["weasis_link_dev.pytest_postgres"]` (or `-p weasis_link_dev.pytest_postgres`).
All fixtures are session-scoped: one cluster per run (≈1 s to start), one database per dataset.

- `postgres_server`: the running `PostgresServer`.
- `postgres_pacs`: a database holding `synthetic_studies.standard_dataset()`, as a `PacsDatabase`.
- `postgres_large_study`: `(instance_count) -> PacsDatabase`, a fresh database holding `large_study(n)`;
  cached per count for the session.
- `postgres_database_factory`: `(records, name=None) -> PacsDatabase`, a fresh database holding any records.

Tests using them talk to a real server: mark them `@pytest.mark.integration`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from weasis_link_dev.dataset import InstanceRecord
from weasis_link_dev.pacs_database import LoadResult, load_records
from weasis_link_dev.postgres import PostgresServer

__all__ = [
    "PacsDatabase",
    "postgres_database_factory",
    "postgres_large_study",
    "postgres_pacs",
    "postgres_server",
]


@dataclass(frozen=True, slots=True)
class PacsDatabase:
    """A database of the private cluster with PACS records loaded (test role, password auth over TCP)."""

    sqlalchemy_url: str
    database: str
    records: tuple[InstanceRecord, ...]
    loaded: LoadResult
    load_seconds: float

    def engine(self) -> sa.Engine:
        """A new engine on this database; the caller disposes of it."""
        return sa.create_engine(self.sqlalchemy_url)


DatabaseFactory = Callable[..., PacsDatabase]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_database_factory(postgres_server: PostgresServer) -> Callable[..., PacsDatabase]:
    """`make(records, name=None)`: a fresh database named `name` (or `pacs_<n>`) with the schema and the records."""
    counter = itertools.count(1)

    def make(records: Iterable[InstanceRecord], name: str | None = None) -> PacsDatabase:
        database = name or f"pacs_{next(counter)}"
        url = postgres_server.create_database(database)
        loaded_records = tuple(records)
        started = time.perf_counter()
        engine = sa.create_engine(url)
        try:
            loaded = load_records(engine, loaded_records)
        finally:
            engine.dispose()
        return PacsDatabase(url, database, loaded_records, loaded, time.perf_counter() - started)

    return make


@pytest.fixture(scope="session")
def postgres_pacs(postgres_database_factory: DatabaseFactory) -> PacsDatabase:
    """The standard synthetic dataset (the one Orthanc and the SQLite sample archive hold too)."""
    from weasis_link_dev.synthetic_studies import standard_dataset  # pydicom-free, but only needed here

    return postgres_database_factory(standard_dataset(), name="pacs_standard")


@pytest.fixture(scope="session")
def postgres_large_study(postgres_database_factory: DatabaseFactory) -> Callable[[int], PacsDatabase]:
    """`load(instance_count)`: a database holding one `large_study(instance_count)`, for benchmarks."""
    from weasis_link_dev.synthetic_studies import large_study  # pydicom-free, but only needed here

    cache: dict[int, PacsDatabase] = {}

    def load(instance_count: int) -> PacsDatabase:
        if instance_count not in cache:
            cache[instance_count] = postgres_database_factory(
                large_study(instance_count), name=f"pacs_large_{instance_count}"
            )
        return cache[instance_count]

    return load
