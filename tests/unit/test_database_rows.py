"""A database answer read by column position (database_rows.add_rows: one call per run of a series' rows) builds
exactly the tree, and counts exactly the refusals, of one mapping per row through StudyTreeBuilder.add_instance:
whatever the rows repeat, interleave, duplicate or get wrong."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from weasis_link.connectors.database_rows import RowLayout, add_rows
from weasis_link.study_tree import SKIP_CONFLICT, SKIP_DUPLICATE, SKIP_SERIES_UID, SKIP_SOP_UID, StudyTreeBuilder

COLUMNS = (
    "PatientID",
    "IssuerOfPatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
    "patientPk",  # a column the builder does not read
)
# Small pools, so that rows share studies and series, repeat SOP UIDs, reuse a series under two studies, a study
# under two patients, and carry invalid UIDs and absent values.
row = st.tuples(
    st.sampled_from(["P1", "P2", None]),
    st.sampled_from([None, "ISS"]),
    st.sampled_from(["1.2.1", "1.2.2", "1.2.x"]),
    st.sampled_from(["1.3.1", "1.3.2", " 1.3.3 ", "bad"]),
    st.sampled_from(["CT", None, "mr"]),
    st.sampled_from([1, 2, None, 2**40]),
    st.sampled_from([None, "Axial", ""]),
    st.sampled_from(["1.4.1", "1.4.2", "1.4.3", "1.4.4", "1.4..5", None]),
    st.sampled_from(["1.2.840.10008.5.1.4.1.1.2", None, "x"]),
    st.sampled_from([None, 3, 1, -(2**40)]),
    st.just(7),
)


def snapshot(builder: StudyTreeBuilder) -> tuple[Any, ...]:
    studies = [
        (
            s.study_instance_uid,
            s.patient.key,
            [
                (
                    se.series_instance_uid,
                    se.modality,
                    se.series_number,
                    se.description,
                    [(i.sop_instance_uid, i.sop_class_uid, i.instance_number) for i in se.instances],
                )
                for se in s.series.values()
            ],
        )
        for s in builder.studies()
    ]
    return studies, dict(builder.skipped)


@given(st.lists(row, max_size=40))
def test_rows_by_position_build_what_one_mapping_per_row_builds(rows: list[tuple[Any, ...]]) -> None:
    by_mapping = StudyTreeBuilder()
    by_mapping.add_instances(dict(zip(COLUMNS, r, strict=True)) for r in rows)
    by_position = StudyTreeBuilder()
    add_rows(by_position, rows, RowLayout(COLUMNS))
    assert snapshot(by_position) == snapshot(by_mapping)


def test_a_series_run_counts_each_refused_row() -> None:
    """One call per run of a series' rows still refuses, and counts, row by row."""
    base = ("P1", None, "1.2.1", "1.3.1", "CT", 1, None, "1.4.1", "1.2.3", 1, 7)
    rows = [
        base,
        base,  # duplicate SOP
        (*base[:7], "1.4..2", *base[8:]),  # invalid SOP
        (*base[:3], "bad", *base[4:]),  # invalid series UID
        (*base[:2], "1.2.2", *base[3:7], "1.4.9", *base[8:]),  # series 1.3.1 under another study
    ]
    builder = StudyTreeBuilder()
    add_rows(builder, rows, RowLayout(COLUMNS))
    assert builder.skipped == {SKIP_DUPLICATE: 1, SKIP_SOP_UID: 1, SKIP_SERIES_UID: 1, SKIP_CONFLICT: 1}
    [study] = builder.studies()
    [series] = study.series.values()
    assert [i.sop_instance_uid for i in series.instances] == ["1.4.1"]


def test_a_later_row_completes_a_series_attribute() -> None:
    """A series whose first rows lack a value takes it from a later row (a run per distinct series values)."""
    first = ("P1", None, "1.2.1", "1.3.1", None, None, None, "1.4.1", None, None, 7)
    later = ("P1", None, "1.2.1", "1.3.1", "CT", 4, "Axial", "1.4.2", None, None, 7)
    builder = StudyTreeBuilder()
    add_rows(builder, [first, later, (*first[:7], "1.4.3", *first[8:])], RowLayout(COLUMNS))
    [study] = builder.studies()
    [series] = study.series.values()
    assert (series.modality, series.series_number, series.description) == ("CT", 4, "Axial")
    assert len(series.instances) == 3
