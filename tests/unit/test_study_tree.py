"""The study tree builder: one instance once, one patient per (PatientID, IssuerOfPatientID), bad records out."""

from __future__ import annotations

from weasis_link.study_tree import (
    SKIP_DUPLICATE,
    SKIP_PATIENT_CONFLICT,
    SKIP_PATIENT_ID,
    SKIP_SOP_UID,
    PatientKey,
    StudyTreeBuilder,
    sorted_series,
    sorted_studies,
)


def row(
    sop: str, *, study: str = "1.1", series: str = "1.1.1", pid: str = "P1", issuer: str | None = "A", **kw: object
):
    return {
        "PatientID": pid,
        "IssuerOfPatientID": issuer,
        "PatientName": "Doe^Jane",
        "StudyInstanceUID": study,
        "SeriesInstanceUID": series,
        "SOPInstanceUID": sop,
        **kw,
    }


def test_same_patient_id_under_two_issuers_is_two_patients() -> None:
    builder = StudyTreeBuilder()
    builder.add_instance(row("1.1.1.1", study="1.1", issuer="HOSP-A"))
    builder.add_instance(row("1.2.1.1", study="1.2", series="1.2.1", issuer="HOSP-B"))
    keys = {s.patient.key for s in builder.studies()}
    assert keys == {PatientKey("P1", "HOSP-A"), PatientKey("P1", "HOSP-B")}


def test_each_instance_appears_once_and_duplicates_are_counted() -> None:
    builder = StudyTreeBuilder()
    builder.add_instances([row("1.1.1.1"), row("1.1.1.1"), row("1.1.1.2")])
    [study] = builder.studies()
    assert [i.sop_instance_uid for i in study.series["1.1.1"].instances] == ["1.1.1.1", "1.1.1.2"]
    assert builder.skipped == {SKIP_DUPLICATE: 1}


def test_unrepresentable_records_are_left_out_and_counted() -> None:
    builder = StudyTreeBuilder()
    builder.add_instance(row("not-a-uid"))
    builder.add_instance(row("1.1.1.9", pid="x" * 65))
    builder.add_instance(row("1.1.1.8", issuer="bad\\issuer"))
    assert builder.studies() == []
    assert builder.skipped == {SKIP_SOP_UID: 1, SKIP_PATIENT_ID: 2}


def test_a_study_uid_seen_under_another_patient_is_refused() -> None:
    builder = StudyTreeBuilder()
    builder.add_instance(row("1.1.1.1", pid="P1"))
    builder.add_instance(row("1.1.1.2", pid="P2"))  # corrupt PACS answer: same study, other patient
    [study] = builder.studies()
    assert [i.sop_instance_uid for i in study.series["1.1.1"].instances] == ["1.1.1.1"]
    assert builder.skipped == {SKIP_PATIENT_CONFLICT: 1}


def test_study_level_answer_is_completed_by_instance_rows() -> None:
    builder = StudyTreeBuilder()
    study = builder.add_study({"PatientID": "P1", "StudyInstanceUID": "1.1", "StudyDate": "20240101"})
    assert study is not None
    builder.add_instance({"SeriesInstanceUID": "1.1.1", "SOPInstanceUID": "1.1.1.1", "Modality": "ct"}, study)
    [s] = builder.studies()
    assert s.study_date == "20240101"
    assert s.modalities == {"CT"}


def test_studies_sort_most_recent_first_series_and_instances_by_number() -> None:
    builder = StudyTreeBuilder()
    builder.add_instances(
        [
            row("1.1.1.2", StudyDate="20200101", SeriesNumber="2", InstanceNumber="10", series="1.1.2"),
            row("1.1.1.3", StudyDate="20200101", SeriesNumber="1", InstanceNumber="2"),
            row("1.1.1.4", StudyDate="20200101", SeriesNumber="1", InstanceNumber="1"),
            row("1.2.1.1", study="1.2", series="1.2.1", StudyDate="20240101"),
            row("1.3.1.1", study="1.3", series="1.3.1"),
        ]
    )
    studies = sorted_studies(builder.studies())
    assert [s.study_instance_uid for s in studies] == ["1.2", "1.1", "1.3"]
    series = sorted_series(studies[1])
    assert [s.series_instance_uid for s in series] == ["1.1.1", "1.1.2"]
    assert [i.sop_instance_uid for i in series[0].instances] == ["1.1.1.4", "1.1.1.3"]
