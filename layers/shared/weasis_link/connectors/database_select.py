"""The configured select's columns and the search criteria as conditions on them, for both database connectors.

`connectors.database` (SQLAlchemy Core: PostgreSQL, MySQL/MariaDB) and `connectors.sqlite` (the standard library's
sqlite3: the embedded archive, without SQLAlchemy's import at cold start) query the same way:

    SELECT * FROM (<configured select>) AS weasis_q WHERE <conditions>

Conditions are built here, once, as data: an AND of groups, each group an OR of terms, each term an AND of atoms
(`column IN values`, `column LIKE pattern`, `column = value`). Each connector renders them with bound parameters
only (SQLAlchemy's expanding IN, sqlite3's `?`): a request value never becomes SQL text. Only column names, which
come from the database's own description of the configured select, are written into the statement.

The `*-column` settings name the columns the criteria are matched against: an output column of the select
(`patientId`), or, as in weasis-pacs-connector and ViewerHub configurations, the table column the select reads
(`p.pat_id`), which is resolved to the output column it is selected as (`p.pat_id AS patientId`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from weasis_link import config as cfg
from weasis_link.criteria import PatientIdentifier, QueryCriteria
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable
from weasis_link.study_tree import ALL_KEYWORDS

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
LIKE_ESCAPE: Final = "\\"
PATIENT_RECORD: Final = "patientpk"  # folded name of the optional patient-record column
SUBQUERY: Final = "weasis_q"


def fold(name: str) -> str:
    return name.replace("_", "").lower()


class SelectColumns:
    """The configured select's output columns and the DICOM keyword each one carries."""

    def __init__(self, names: tuple[str, ...], select: str = "") -> None:
        self.names = names
        self._select = select
        self.keywords: dict[str, str] = {}
        seen: set[str] = set()
        for name in names:
            keyword = _COLUMN_KEYWORDS.get(fold(name))
            if keyword is not None and keyword not in seen:
                self.keywords[name] = keyword
                seen.add(keyword)

    def find(self, config_name: str | None) -> str | None:
        """The output column a key-column setting names: an output column (matched case- and
        underscore-insensitively), or a `table.column` of the select, resolved to the alias it is selected as."""
        if config_name is None:
            return None
        qualifier, dot, column = config_name.rpartition(".")
        if dot:
            alias = self._alias_of(qualifier, column)
            if alias is not None:
                return alias
            config_name = column  # `t.col` selected without an alias comes out as `col`
        return next((n for n in self.names if fold(n) == fold(config_name)), None)

    def _alias_of(self, qualifier: str, column: str) -> str | None:
        # `<qualifier>.<column> [AS] <alias>` in the select's text; only an alias that is a real output column counts
        # (so `p.pat_id FROM ...` never makes FROM an alias). The text is configuration, never a request value.
        pattern = re.compile(
            rf'(?<![\w."`\]]){re.escape(qualifier)}\s*\.\s*"?{re.escape(column)}"?\s+(?:AS\s+)?'
            r'(?:"([^"]+)"|`([^`]+)`|\[([^\]]+)\]|([A-Za-z_][\w$]*))',
            re.IGNORECASE,
        )
        for match in pattern.finditer(self._select):
            alias = next(g for g in match.groups() if g is not None)
            exact = next((n for n in self.names if n == alias), None)
            found = exact or next((n for n in self.names if n.lower() == alias.lower()), None)
            if found is not None:
                return found
        return None


def checked_columns(names: tuple[str, ...], query: cfg.DbQueryConfig) -> SelectColumns:
    """The select's output columns, refused when the builder's keys or a configured key column are missing."""
    columns = SelectColumns(names, query.select)
    missing = [
        k
        for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
        if k not in columns.keywords.values()
    ]
    if missing:
        raise ArchiveError(f"the configured select returns no column for {', '.join(missing)}", "bad-response")
    for config_name in (
        query.patient_id_column,
        query.study_instance_uid_column,
        query.serie_instance_uid_column,
        query.sop_instance_uid_column,
    ):
        if columns.find(config_name) is None:
            raise ArchiveError(f"the configured select has no column '{config_name}'", "bad-response")
    return columns


@dataclass(frozen=True, slots=True)
class Atom:
    """`column IN value` (a tuple), `column LIKE value` (escaped with LIKE_ESCAPE) or `column = value`."""

    column: str
    op: Literal["in", "like", "="]
    value: str | tuple[str, ...]


Term = tuple[Atom, ...]  # every atom holds
Group = tuple[Term, ...]  # some term holds


def conditions(criteria: QueryCriteria, query: cfg.DbQueryConfig, columns: SelectColumns) -> list[Group]:
    """The criteria as groups that must all hold, on output columns of the select."""

    def column(config_name: str | None) -> str:
        name = columns.find(config_name)
        if name is None:
            raise ArchiveError(f"the configured select has no column '{config_name}'", "bad-response")
        return name

    groups: list[Group] = []
    if criteria.patients:
        pid = column(query.patient_id_column)  # checked when the columns were discovered
        issuer = columns.find(query.issuer_of_patient_id_column)
        groups.append(tuple(term for p in criteria.patients for term in _patient_terms(p, pid, issuer)))
    for values, config_name in (
        (criteria.study_uids, query.study_instance_uid_column),
        (criteria.series_uids, query.serie_instance_uid_column),
        (criteria.object_uids, query.sop_instance_uid_column),
        (criteria.accession_numbers, query.accession_number_column),
    ):
        if values:
            groups.append(tuple((atom,) for atom in _value_atoms(values, column(config_name))))
    return groups


def like_pattern(value: str) -> str:
    """DICOM wildcards (* ?) to a LIKE pattern, with LIKE's own % _ and the escape character escaped."""
    out = []
    for c in value:
        if c in ("%", "_", LIKE_ESCAPE):
            out.append(LIKE_ESCAPE + c)
        elif c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        else:
            out.append(c)
    return "".join(out)


def _value_atoms(values: tuple[str, ...], column: str) -> list[Atom]:
    exact = tuple(v for v in values if "*" not in v and "?" not in v)
    atoms = [Atom(column, "in", exact)] if exact else []
    atoms.extend(Atom(column, "like", like_pattern(v)) for v in values if "*" in v or "?" in v)
    return atoms


def _patient_terms(patient: PatientIdentifier, pid: str, issuer: str | None) -> list[Term]:
    # One identifier: one atom (an IN of one value, or a LIKE pattern), with its issuer when the select has one.
    # Without an issuer column, the service's restrict() still drops other issuers' studies.
    terms: list[Term] = []
    for atom in _value_atoms((patient.patient_id,), pid):
        if patient.issuer is not None and issuer is not None:
            terms.append((atom, Atom(issuer, "=", patient.issuer)))
        else:
            terms.append((atom,))
    return terms


def probe_failure(error: ArchiveError, driver_said: str) -> ArchiveError:
    """check-config's error for a failed probe: the caller-safe error, same class and kind, with what the driver
    said added (the integrator's terminal; the driver's message has no bound value, the password is removed)."""
    detail = f"{error.detail}: {driver_said}"
    if isinstance(error, ArchiveTimeout):
        return ArchiveTimeout(detail)
    if isinstance(error, ArchiveUnavailable):
        return ArchiveUnavailable(detail)
    return ArchiveError(detail, error.kind)
