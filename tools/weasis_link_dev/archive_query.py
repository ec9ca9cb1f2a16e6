"""What the service does with one archive, for the connector tests: find within a deadline, then restrict the
answer to the criteria (criteria.restrict), so a test sees what a manifest would list."""

from __future__ import annotations

import time
from collections.abc import Iterable

from weasis_link.connectors.base import Connector, QueryContext
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.study_tree import Study, StudyTreeBuilder


def ask_archive(
    connector: Connector, query: str, *, seconds: float = 20, token: str | None = None
) -> tuple[list[Study], StudyTreeBuilder]:
    """The studies `connector` answers to the query string `query` (restricted to it), and the builder (what it
    skipped and why)."""
    criteria = criteria_from_query_string(query)
    builder = StudyTreeBuilder()
    connector.find(criteria, QueryContext(token, time.monotonic() + seconds), builder)
    return criteria.restrict(builder.studies()), builder


def instance_uids(studies: Iterable[Study]) -> set[str]:
    return {i.sop_instance_uid for study in studies for series in study.series.values() for i in series.instances}


def patients_by_instance(studies: Iterable[Study]) -> dict[str, tuple[str, str | None]]:
    """SOPInstanceUID -> (PatientID, IssuerOfPatientID) of its study."""
    return {
        i.sop_instance_uid: (study.patient.key.patient_id, study.patient.key.issuer)
        for study in studies
        for series in study.series.values()
        for i in series.instances
    }
