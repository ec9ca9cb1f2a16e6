"""What the DICOM (C-FIND) and DICOMweb (QIDO-RS) connectors plan alike, from the criteria alone: the study-level
queries to send, which studies deserve their instance-level queries, and when those may start before the
study-level answer. How a query is written stays with each connector."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TypeVar

from weasis_link.criteria import QueryCriteria
from weasis_link.study_tree import Study

_T = TypeVar("_T")


def plan_study_queries(dimensions: Sequence[Sequence[_T]]) -> list[list[_T]]:
    """Study-level queries whose answers, together, hold every study the keys can match; each query is the list of
    the matching values it uses, one per key. `dimensions` holds, per key used, the values that each need a query of
    their own. A key with one value goes into every query; of the keys with several, only the one with the fewest
    values is queried, and the others are left to the study-level filtering, so that the number of queries stays
    that small number."""
    fixed = [values[0] for values in dimensions if len(values) == 1]
    several = [values for values in dimensions if len(values) > 1]
    if not several:
        return [fixed]
    return [[*fixed, value] for value in min(several, key=len)]


def instances_at_once(criteria: QueryCriteria) -> bool:
    """A studyUID-only request names its studies: their instance-level queries need not wait for the study-level
    answer, which then only completes the study attributes (and says which UIDs exist)."""
    return bool(
        criteria.study_uids
        and not criteria.patients
        and not criteria.accession_numbers
        and not criteria.has_study_filters
    )


def worth_fetching(study: Study, criteria: QueryCriteria) -> bool:
    """Whether the study-level answer leaves the study a chance; only what that answer shows for certain rules a
    study out (the service re-checks everything on the complete studies)."""
    if not criteria.study_matches_keys(study):
        return False
    if criteria.modalities and not study.modalities_in_study:
        # No ModalitiesInStudy in the answer: only the series will tell.
        return dataclasses.replace(criteria, modalities=frozenset()).study_passes_filters(study)
    return criteria.study_passes_filters(study)


def most_recent(wanted: Mapping[str, Study], criteria: QueryCriteria) -> dict[str, Study]:
    """The wanted studies (by StudyInstanceUID) minus those beyond mostRecentResults; with series or object keys
    every wanted study is kept, as a newer one may end up empty."""
    if criteria.series_uids or criteria.object_uids:
        return dict(wanted)
    kept = criteria.keep_most_recent(list(wanted.values()))
    return {s.study_instance_uid: s for s in kept}
