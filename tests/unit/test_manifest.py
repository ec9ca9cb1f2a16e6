"""The manifest: valid against the upstream XSDs, with what Weasis needs where it reads it."""

from __future__ import annotations

import gzip

import pytest
from lxml import etree

from weasis_link import manifest as mf
from weasis_link.study_tree import Instance, Patient, PatientKey, Series, Study, StudyTreeBuilder
from weasis_link_dev.dev_keys import REPO_ROOT
from weasis_link_dev.weasis_client import XSD_472, read_manifest, validate


def studies(*rows: dict[str, object]):
    b = StudyTreeBuilder()
    b.add_instances(rows)
    return b.studies()


ROW = {
    "PatientID": "WLS-1001",
    "IssuerOfPatientID": "WEASIS-DEMO",
    "PatientName": "Müller^Jürgen",
    "PatientBirthDate": "19640312",
    "PatientSex": "M",
    "StudyInstanceUID": "2.25.1",
    "StudyDate": "20240314",
    "StudyTime": "101502.25",
    "StudyDescription": 'CT <Thorax> & "Abdomen"',
    "AccessionNumber": "ACC-1",
    "StudyID": "1",
    "ReferringPhysicianName": "Weber^Anna",
    "SeriesInstanceUID": "2.25.1.1",
    "Modality": "CT",
    "SeriesNumber": 2,
    "SeriesDescription": "Thorax 5mm",
    "SeriesDate": "20240314",
    "SeriesTime": "101600",
    "SOPInstanceUID": "2.25.1.1.1",
    "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
    "InstanceNumber": 1,
}


def test_full_manifest_is_valid_against_both_xsds_and_carries_every_attribute() -> None:
    archive = mf.ArchiveQuery(
        arc_id="pacs",
        base_url="https://pacs.example/wado",
        studies=studies(ROW),
        http_tags=[("Authorization", "Bearer abc.def.ghi"), ("X-Site", "a&b")],
        transfer_syntax_uid="*",
        compression_rate=80,
        additionnal_parameters="&anonymize=no",
        override_dicom_tags=["0x00100010"],
    )
    xml = mf.manifest_xml([archive], "uid-1")
    assert validate(xml) == []
    assert validate(xml, XSD_472) == []
    [view] = read_manifest(xml)
    assert view.http_tags == {"Authorization": "Bearer abc.def.ghi", "X-Site": "a&b"}
    assert view.attributes["additionnalParameters"] == "&anonymize=no"  # the XSD's spelling, deliberately
    assert "queryMode" not in view.attributes  # absent = WADO-URI for every Weasis version
    assert view.patients == [
        {
            "PatientID": "WLS-1001",
            "PatientName": "Müller^Jürgen",
            "IssuerOfPatientID": "WEASIS-DEMO",
            "PatientBirthDate": "19640312",
            "PatientSex": "M",
        }
    ]
    assert view.studies[0]["StudyDescription"] == 'CT <Thorax> & "Abdomen"'
    assert view.studies[0]["StudyTime"] == "101502.25"
    assert view.series[0] | {} == {
        "SeriesInstanceUID": "2.25.1.1",
        "SeriesDescription": "Thorax 5mm",
        "SeriesNumber": "2",
        "Modality": "CT",
        "SeriesDate": "20240314",
        "SeriesTime": "101600",
        "WadoTransferSyntaxUID": "*",
        "WadoCompressionRate": "80",
    }
    assert view.instance_attributes == [
        {"SOPInstanceUID": "2.25.1.1.1", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "InstanceNumber": "1"}
    ]


def test_wado_rs_archive_has_query_mode_and_direct_download_paths() -> None:
    archive = mf.ArchiveQuery(
        arc_id="cloud", base_url="https://dicomweb.example/v1", studies=studies(ROW), wado_rs=True
    )
    xml = mf.manifest_xml([archive], "u")
    assert validate(xml) == []
    [view] = read_manifest(xml)
    assert view.attributes["queryMode"] == "DICOM_WEB"
    assert view.instance_attributes[0]["DirectDownloadFile"] == "/studies/2.25.1/series/2.25.1.1/instances/2.25.1.1.1"


def test_empty_answer_is_a_valid_manifest_with_one_warning() -> None:
    archive = mf.ArchiveQuery(arc_id="pacs", base_url="https://pacs/wado")
    archive.add_message(mf.Message("No images found", "Nothing matches."))
    archive.add_message(mf.Message("Archive unavailable", "Down.", "ERROR"))
    xml = mf.manifest_xml([archive], "u")
    assert validate(xml) == []
    [view] = read_manifest(xml)
    assert view.message == {
        "title": "Archive unavailable",
        "description": "Down. No images found: Nothing matches.",
        "severity": "ERROR",
    }


def test_one_arcquery_per_archive_and_patients_split_by_issuer() -> None:
    other = ROW | {
        "IssuerOfPatientID": "CLINIC-B",
        "PatientName": "Dupont^Élodie",
        "StudyInstanceUID": "2.25.2",
        "SeriesInstanceUID": "2.25.2.1",
        "SOPInstanceUID": "2.25.2.1.1",
    }
    a = mf.ArchiveQuery(arc_id="a", base_url="https://a/wado", studies=studies(ROW, other))
    b = mf.ArchiveQuery(arc_id="b", base_url="https://b/wado", web_login=mf.web_login("u", "p:w"))
    xml = mf.manifest_xml([a, b], "u")
    assert validate(xml) == []
    views = read_manifest(xml)
    assert [v.arc_id for v in views] == ["a", "b"]
    assert [(p["PatientID"], p["IssuerOfPatientID"]) for p in views[0].patients] == [
        ("WLS-1001", "WEASIS-DEMO"),
        ("WLS-1001", "CLINIC-B"),
    ]
    assert views[1].attributes["webLogin"] == "dTpwOnc="


def test_hostile_pacs_values_still_give_a_valid_manifest() -> None:
    hostile = ROW | {
        "PatientName": "\x00\x1b[31mEvil\x07 " + "N" * 100,
        "PatientSex": "unknown",
        "PatientBirthDate": "1964-13-45",
        "StudyTime": "25:61",
        "StudyDescription": "]]><!-- \ufffe \ud83d",
        "AccessionNumber": "x" * 40,
        "StudyID": "é" * 30,
        "Modality": "c t/ä",
        "SeriesNumber": "9999999999",
        "InstanceNumber": "-3",
    }
    xml = mf.manifest_xml([mf.ArchiveQuery(arc_id="x", base_url="https://x/w", studies=studies(hostile))], "u")
    assert validate(xml) == []


def test_gzip_is_deterministic_and_round_trips() -> None:
    archive = mf.ArchiveQuery(arc_id="pacs", base_url="https://pacs/wado", studies=studies(ROW))
    body = mf.manifest_gzip([archive], "u")
    assert body[:2] == b"\x1f\x8b"
    assert body == mf.manifest_gzip([archive], "u")
    assert gzip.decompress(body) == mf.manifest_xml([archive], "u")


@pytest.mark.parametrize(("patients", "studies_", "series", "instances"), [(2, 2, 2, 2)])
def test_counts(patients: int, studies_: int, series: int, instances: int) -> None:
    other = ROW | {
        "IssuerOfPatientID": None,
        "StudyInstanceUID": "2.25.2",
        "SeriesInstanceUID": "2.25.2.1",
        "SOPInstanceUID": "2.25.2.1.1",
    }
    archive = mf.ArchiveQuery(arc_id="pacs", base_url="https://pacs/wado", studies=studies(ROW, other))
    assert mf.count([archive]) == (patients, studies_, series, instances)


def test_instances_are_written_as_text_only_when_no_value_needs_escaping() -> None:
    """A 5,000-instance series takes the text path; a series with a value XML must escape (possible only for a
    tree built outside StudyTreeBuilder, which refuses such UIDs) is written by lxml, in the same document."""
    plain = Series("2.25.7.1", modality="CT")
    plain.instances = [Instance(f"2.25.7.1.{n}", "1.2.840.10008.5.1.4.1.1.2", n) for n in range(5000)]
    odd = Series("2.25.7.2", modality="CT", instances=[Instance("2.25.7.2.1", 'a"&<b> c', None)])
    study = Study("2.25.7", Patient(PatientKey("P", None)), series={s.series_instance_uid: s for s in (plain, odd)})
    for wado_rs in (False, True):
        download = "/studies/2.25.7/series/2.25.7.1/instances/" if wado_rs else None
        assert mf.instances_markup(plain.instances, download) is not None
        assert mf.instances_markup(odd.instances, download) is None
        archive = mf.ArchiveQuery(arc_id="a", base_url="https://a/w", studies=[study], wado_rs=wado_rs)
        xml = mf.manifest_xml([archive], "u")
        # Well-formed, and the XSD's only complaint is the deliberately invalid class UID.
        [error] = validate(xml)
        assert "SOPClassUID" in error and 'a"&<b> c' in error
        root = etree.fromstring(xml)
        found = root.findall(f".//{{{mf.NAMESPACE}}}Instance")
        assert [i.get("SOPInstanceUID") for i in found] == [f"2.25.7.1.{n}" for n in range(5000)] + ["2.25.7.2.1"]
        assert found[0].get("InstanceNumber") == "0" and found[-1].get("SOPClassUID") == 'a"&<b> c'
        assert (found[1].get("DirectDownloadFile") == f"{download}2.25.7.1.1") if download else True
        assert gzip.decompress(mf.manifest_gzip([archive], "u")) == xml


def test_security_doc_states_the_characters_written_without_lxml() -> None:
    alphabet = mf._VERBATIM.pattern.removesuffix("*+")
    assert f"(`{alphabet}`)" in (REPO_ROOT / "docs" / "security.md").read_text()
