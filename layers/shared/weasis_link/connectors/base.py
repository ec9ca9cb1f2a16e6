"""The one protocol every connector implements, and what a query carries besides the criteria."""

from __future__ import annotations

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
    less. It raises `ArchiveError` (or a subclass: timeout, unavailable) when the PACS cannot answer.
    """

    connector_id: str

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None: ...
