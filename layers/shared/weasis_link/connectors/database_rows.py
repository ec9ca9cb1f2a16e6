"""A database answer into the study tree, read by column position.

A 5,000-instance study answers 5,000 rows that repeat the patient, study and series columns. The positions of the
columns the builder reads are found once per answer; a row becomes a mapping only for what the builder reads from it:
the whole row for the first row of each (study, patient), the series columns once per run of consecutive rows with
the same study and series values, and each row's (SOPInstanceUID, SOPClassUID, InstanceNumber) as a tuple (the
builder's add_series_instances). Same records, same order, same checks as one mapping per row: the study tree still
normalises and refuses every value. (A column's values share one type, so equal series values normalise alike.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, TypeVar

from weasis_link.connectors.database_select import PATIENT_RECORD, SelectColumns, fold
from weasis_link.study_tree import INSTANCE_KEYWORDS, SERIES_KEYWORDS, Study, StudyTreeBuilder

Row = Sequence[Any]
T = TypeVar("T")
_UNSEEN: Any = object()  # a study key not met yet (None is a refused study)


def _values(positions: Sequence[int]) -> Callable[[Row], tuple[Any, ...]]:
    """The values at `positions` of a row, as a tuple (itemgetter returns a bare value for one position)."""
    if len(positions) >= 2:
        return itemgetter(*positions)
    if positions:
        position = positions[0]
        return lambda row: (row[position],)
    return lambda _row: ()


class RowLayout:
    """Where each keyword sits in the answer's rows (a repeated name: its last column, as a mapping keeps it)."""

    def __init__(self, keywords: Sequence[str]) -> None:
        self.keywords = tuple(keywords)
        self.position = {keyword: i for i, keyword in enumerate(self.keywords)}
        series = [k for k in SERIES_KEYWORDS if k in self.position]
        self._series_keywords = tuple(series)
        self.series_values = _values([self.position[k] for k in series])
        self.instance_values = self.values(*INSTANCE_KEYWORDS)  # in add_series_instances' order
        self.study_key = self.values("StudyInstanceUID", "PatientID", "IssuerOfPatientID")
        self.identity = self.values("PatientID", "IssuerOfPatientID")

    def values(self, *keywords: str) -> Callable[[Row], tuple[Any, ...]]:
        """The values of `keywords` in a row, None for a keyword the answer lacks (as `mapping.get` gives)."""
        absent = [i for i, k in enumerate(keywords) if k not in self.position]
        if not absent:
            return _values([self.position[k] for k in keywords])
        positions = {i: self.position[k] for i, k in enumerate(keywords) if k in self.position}
        return lambda row: tuple(row[positions[i]] if i in positions else None for i in range(len(keywords)))

    def mapping(self, row: Row) -> dict[str, Any]:
        return dict(zip(self.keywords, row, strict=True))

    def series_mapping(self, row: Row) -> dict[str, Any]:
        return dict(zip(self._series_keywords, self.series_values(row), strict=True))


def add_rows(builder: StudyTreeBuilder, rows: Sequence[Row], layout: RowLayout) -> None:
    """Rows into the builder, each study (and its patient) read once, each run of rows of one series in one call:
    a study's rows repeat its attributes, and the builder's add_study is the costly part of add_instance. Rows of
    one study UID naming another patient go through add_study again, which refuses them (never one patient's images
    under another's study)."""
    studies: dict[tuple[Any, ...], Study | None] = {}
    study_key = layout.study_key
    series_values = layout.series_values
    instance_values = layout.instance_values
    run_study: Study | None = None
    run_series: tuple[Any, ...] = ()
    run_row: Row = ()
    run: list[tuple[Any, ...]] = []
    for row in rows:
        key = study_key(row)
        study = studies.get(key, _UNSEEN)
        if study is _UNSEEN:
            study = studies[key] = builder.add_study(layout.mapping(row))  # counts why a refused row is left out
            if study is None:
                continue
        elif study is None:
            builder.add_instance(layout.mapping(row))  # the next rows of a refused study: counted again each
            continue
        values = series_values(row)
        if study is not run_study or values != run_series:
            if run_study is not None:
                builder.add_series_instances(run_study, layout.series_mapping(run_row), run)
            run_study, run_series, run_row, run = study, values, row, []
        run.append(instance_values(row))
    if run_study is not None:
        builder.add_series_instances(run_study, layout.series_mapping(run_row), run)


def add_answer(builder: StudyTreeBuilder, columns: SelectColumns, names: Sequence[str], rows: Sequence[Row]) -> None:
    """A database's answer (its column names and rows, whichever driver ran the select) into the study tree: the
    select's columns mapped to DICOM keywords, one identity per patient record when the select names the record."""
    layout = RowLayout([columns.keywords.get(n, n) for n in names])
    record = next((n for n in names if fold(n) == PATIENT_RECORD), None)
    if record is not None:
        rows = one_identity_per_record(rows, layout.identity, itemgetter(layout.position[record]))
    add_rows(builder, rows, layout)


def one_identity_per_record(
    rows: Sequence[T], identity: Callable[[T], tuple[Any, ...]], record: Callable[[T], object]
) -> Sequence[T]:
    """Rows of one patient record under several identifiers (one row per identifier and instance) down to the
    rows of one identifier: the first in (PatientID, issuer) order, the same whatever order the rows came in."""
    chosen: dict[object, tuple[Any, ...]] = {}
    several = False
    for row in rows:  # one pass, cheap: most answers have one identifier per record
        found = identity(row)
        key = record(row)
        previous = chosen.setdefault(key, found)
        if previous != found:
            several = True
            chosen[key] = min(previous, found, key=_identity_order)
    if not several:
        return rows
    return [row for row in rows if identity(row) == chosen[record(row)]]


def _identity_order(identity: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(value or "") for value in identity)
