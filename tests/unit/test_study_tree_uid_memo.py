"""The study tree validates each repeated UID (study, series, SOP class) once per distinct value, not once per
instance row, and the memo changes no outcome: invalid values are still refused on every row."""

from __future__ import annotations

from weasis_link.study_tree import SKIP_SERIES_UID, StudyTreeBuilder

STUDY = "1.2.826.0.1.3680043.8.498.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


def row(series: str, sop: str) -> dict[str, object]:
    return {
        "PatientID": "P1",
        "StudyInstanceUID": STUDY,
        "SeriesInstanceUID": series,
        "SOPInstanceUID": sop,
        "SOPClassUID": CT,
        "Modality": "CT",
    }


def test_repeated_uids_are_validated_once_per_distinct_value() -> None:
    builder = StudyTreeBuilder()
    rows = [row(f"{STUDY}.{i % 3}", f"{STUDY}.{i % 3}.{i}") for i in range(300)]
    builder.add_instances(rows)
    [study] = builder.studies()
    assert study.instance_count == 300
    # One entry per distinct study, series and SOP class UID; none per SOPInstanceUID (unique by definition).
    assert set(builder._checked_uids) == {STUDY, CT, f"{STUDY}.0", f"{STUDY}.1", f"{STUDY}.2"}


def test_a_memoised_invalid_uid_is_refused_on_every_row() -> None:
    builder = StudyTreeBuilder()
    builder.add_instances([row("1.2.x", f"{STUDY}.9.{i}") for i in range(5)])
    builder.add_instances([row(" 1.2.3 ", f"{STUDY}.8.{i}") for i in range(2)])  # padding dropped, as before
    assert builder.skipped[SKIP_SERIES_UID] == 5
    [study] = builder.studies()
    assert list(study.series) == ["1.2.3"]
    assert builder._checked_uids["1.2.x"] is None


def test_non_string_values_bypass_the_memo() -> None:
    builder = StudyTreeBuilder()
    builder.add_instance(row(f"{STUDY}.1", f"{STUDY}.1.1") | {"SOPClassUID": True})
    builder.add_instance(row(f"{STUDY}.1", f"{STUDY}.1.2") | {"SOPClassUID": 1})
    [study] = builder.studies()
    assert [i.sop_class_uid for i in study.series[f"{STUDY}.1"].instances] == [None, "1"]
    assert True not in builder._checked_uids
