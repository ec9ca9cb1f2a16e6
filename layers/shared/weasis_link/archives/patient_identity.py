"""One patient or a clear answer: the decisions about patient identity around the archive queries.

A patient is PatientID *and* IssuerOfPatientID. A link built from a local MRN (no issuer) must not open two people's
images in one viewer, and a wildcard must not list an archive's patients. The rules (docs/security.md):

Before the query (`wildcard_problems`, `archives_for_wildcards`):
- A wildcard (`*`, `?`) in patientID or accessionNumber needs at least MIN_WILDCARD_PREFIX literal characters before
  the first one, and an archive that opted in for that key (`search-criteria.wildcards`, off by default). Archives
  that did not are left out (said in the warnings); when none is left the request is refused (400).
- `default-issuer` (per archive): a patientID without issuer means `ID^^^<default-issuer>` in that archive
  (`with_default_issuer`).

After the query (`check_identities`), over the answers of every selected archive:
- A wildcard query may match at most `search-criteria.wildcard-max-patients` patients (the smallest bound of the
  archives queried, default 1): above it, 409 with the count, no names.
- A patientID without issuer that matches several identities (same ID, different or missing issuers), or an
  accessionNumber (without patientID) whose studies belong to several identities, is ambiguous: `connector.
  ambiguous-patient: refuse` (default) answers 409 listing the issuers found; `warn` keeps them all, with a WARN
  <Message> in the manifest and a warning in the JSON answer.

`needs_result_check` tells the launch routes when a rule can only be decided after the query: they then query
before answering (a 409 must reach the caller, not a Weasis dialog).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Final

from weasis_link.config import AppConfig
from weasis_link.criteria import KEY_PARAMETERS, PatientIdentifier, QueryCriteria, SearchKey
from weasis_link.errors import AmbiguousPatient, FieldProblem, TooManyPatients, WildcardNotAllowed
from weasis_link.study_tree import PatientKey, Study

MIN_WILDCARD_PREFIX: Final = 3
AMBIGUOUS_TITLE: Final = "Several patients"
_WILDCARD: Final = re.compile(r"[*?]")
PARAMETER_BY_KEY: Final = {key: name for name, key in KEY_PARAMETERS.items()}
NO_ISSUER: Final = "(no issuer)"


def _has_wildcard(value: str) -> bool:
    return _WILDCARD.search(value) is not None


def wildcard_keys(criteria: QueryCriteria) -> set[SearchKey]:
    """The search keys the criteria use with a wildcard."""
    keys: set[SearchKey] = set()
    if any(_has_wildcard(p.patient_id) for p in criteria.patients):
        keys.add(SearchKey.PATIENT_ID)
    if any(_has_wildcard(a) for a in criteria.accession_numbers):
        keys.add(SearchKey.STUDY_ACCESSION_NUMBER)
    return keys


def wildcard_problems(criteria: QueryCriteria) -> list[FieldProblem]:
    """Wildcards with fewer than MIN_WILDCARD_PREFIX literal characters before the first `*` or `?`."""
    problems = []
    values = [("patientID", p.patient_id) for p in criteria.patients]
    values += [("accessionNumber", a) for a in criteria.accession_numbers]
    for name, value in values:
        m = _WILDCARD.search(value)
        if m is not None and m.start() < MIN_WILDCARD_PREFIX:
            problems.append(
                FieldProblem(name, f"needs at least {MIN_WILDCARD_PREFIX} characters before the first * or ?")
            )
    return problems


def _refusing(criteria: QueryCriteria, archive_ids: Iterable[str], config: AppConfig) -> dict[str, set[SearchKey]]:
    used = wildcard_keys(criteria)
    refusing = {}
    for archive_id in archive_ids:
        connector = config.connector.config.get(archive_id)
        if connector is None:
            continue
        missing = used - {SearchKey(k) for k in connector.search_criteria.wildcards}
        if missing:
            refusing[archive_id] = missing
    return refusing


def archives_for_wildcards(criteria: QueryCriteria, archive_ids: Sequence[str], config: AppConfig) -> list[str]:
    """The archives that may answer the criteria's wildcards; 400 when the wildcards are malformed or none may."""
    if not wildcard_keys(criteria):
        return list(archive_ids)
    problems = wildcard_problems(criteria)
    if problems:
        raise WildcardNotAllowed("A wildcard must follow a literal prefix.", problems)
    refusing = _refusing(criteria, archive_ids, config)
    allowed = [a for a in archive_ids if a not in refusing]
    if not allowed:
        names = sorted({PARAMETER_BY_KEY[k] for keys in refusing.values() for k in keys})
        raise WildcardNotAllowed(
            f"Wildcards in {', '.join(names)} are not enabled for the selected archives: give the exact value.",
            [FieldProblem(n, "wildcards (* or ?) are not enabled (search-criteria.wildcards)") for n in names],
        )
    return allowed


def wildcard_warnings(criteria: QueryCriteria, archive_ids: Iterable[str], config: AppConfig) -> list[str]:
    """Archives left out because they do not accept the wildcards used."""
    return [
        f"The archive {a} was not searched: wildcards in {', '.join(sorted(PARAMETER_BY_KEY[k] for k in keys))} "
        "are not enabled there."
        for a, keys in _refusing(criteria, archive_ids, config).items()
    ]


def with_default_issuer(criteria: QueryCriteria, default_issuer: str | None) -> QueryCriteria:
    """The criteria as one archive reads them: its default issuer on every patientID that has none."""
    if default_issuer is None or all(p.issuer is not None for p in criteria.patients):
        return criteria
    patients = tuple(PatientIdentifier(p.patient_id, p.issuer or default_issuer) for p in criteria.patients)
    return dataclasses.replace(criteria, patients=patients)


def needs_result_check(criteria: QueryCriteria, archive_ids: Sequence[str], config: AppConfig) -> bool:
    """Whether `check_identities` may refuse these criteria (then a launch must query before it answers)."""
    if wildcard_keys(criteria):
        return True
    if config.connector.ambiguous_patient != "refuse":
        return False
    if criteria.accession_numbers and not criteria.patients:
        return True
    bare = any(p.issuer is None for p in criteria.patients)
    return bare and any(config.connector.config[a].default_issuer is None for a in archive_ids)


def _issuer_list(keys: Iterable[PatientKey]) -> list[str | None]:
    issuers = {k.issuer for k in keys}
    return sorted(i for i in issuers if i is not None) + ([None] if None in issuers else [])


def check_identities(
    criteria: QueryCriteria, answers: Sequence[tuple[str, Sequence[Study]]], config: AppConfig
) -> list[str]:
    """Refuse (409) what would show more patients than asked for; in `warn` mode return the warning instead."""
    studies = [s for _, archive_studies in answers for s in archive_studies]
    if wildcard_keys(criteria) and answers:
        identities = {s.patient.key for s in studies}
        bound = min(config.connector.config[a].search_criteria.wildcard_max_patients for a, _ in answers)
        if len(identities) > bound:
            raise TooManyPatients(
                f"The wildcard matches {len(identities)} patients; at most {bound} may be listed. "
                "Give a longer prefix or the exact patientID^^^Issuer.",
                len(identities),
                bound,
            )
    ambiguous: dict[str, set[PatientKey]] = {}
    for p in criteria.patients:
        if p.issuer is None and not _has_wildcard(p.patient_id):
            keys = {s.patient.key for s in studies if s.patient.key.patient_id == p.patient_id}
            if len(keys) > 1:
                ambiguous[f"patientID {p.patient_id}"] = keys
    if not criteria.patients:
        for accession in criteria.accession_numbers:
            if not _has_wildcard(accession):
                keys = {s.patient.key for s in studies if s.accession_number == accession}
                if len(keys) > 1:
                    ambiguous[f"accessionNumber {accession}"] = keys
    if not ambiguous:
        return []
    all_keys = set().union(*ambiguous.values())
    issuers = _issuer_list(all_keys)
    listed = ", ".join(i or NO_ISSUER for i in issuers)
    what = "; ".join(ambiguous)
    if config.connector.ambiguous_patient == "refuse":
        raise AmbiguousPatient(
            f"The {what} matches {len(all_keys)} patients (issuers: {listed}). Nothing was stored: ask again with "
            "patientID=<ID>^^^<Issuer> to say which patient.",
            issuers,
            len(all_keys),
        )
    return [
        f"The {what} matches {len(all_keys)} different patients (issuers: {listed}); all are listed. "
        "Check that the images belong to the patient you expect."
    ]
