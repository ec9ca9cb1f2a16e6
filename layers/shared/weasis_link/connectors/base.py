"""The one protocol every connector implements, and what a query carries besides the criteria."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from weasis_link.criteria import QueryCriteria
from weasis_link.study_tree import StudyTreeBuilder


@dataclass(frozen=True, slots=True)
class QueryContext:
    """Per-request context: the caller's token (for connectors that pass it on to the PACS) and the deadline
    (time.monotonic()) by which the whole query must be over."""

    bearer_token: str | None
    deadline: float


class Connector(Protocol):
    """Finds the studies matching the criteria and feeds their instances into the builder.

    A connector may return more than asked (the service re-checks every answer with `criteria.restrict`), never
    less. It raises `ArchiveError` (or a subclass: timeout, unavailable) when the PACS cannot answer. Every
    connector class also shows its configuration block (`settings`) and how many requests (C-FIND queries, HTTP
    requests, SQL statements) its last `find` sent (`last_request_count`, for logs and benchmarks); the planning
    the DICOM and DICOMweb connectors share is in planning.py.
    """

    connector_id: str
    last_request_count: int

    @property
    def settings(self) -> object: ...

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None: ...


def log_find(log: logging.Logger, message: str, connector_id: str, started: float, **counts: int) -> None:
    """The one log line of a find: how many requests it took and how long (`started`: time.perf_counter()); never
    a matching value."""
    log.info(message, extra={"archive": connector_id, **counts, "seconds": round(time.perf_counter() - started, 3)})
