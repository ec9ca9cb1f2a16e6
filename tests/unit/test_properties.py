"""Property tests: whatever a PACS sends, the manifest is valid and every instance is in it exactly once.

`make test` runs these with the `full` hypothesis profile (10,000 manifests); a plain `pytest` uses `dev`."""

from __future__ import annotations

import datetime as dt
import string
from collections import Counter
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weasis_link import manifest as mf
from weasis_link.errors import InvalidRequest
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.launch_uri import weasis_uri
from weasis_link.study_tree import StudyTreeBuilder
from weasis_link_dev.weasis_client import XSD_472, manifest_url_of, read_manifest, validate

# Any Unicode, surrogates and control characters included: what a broken PACS or a mis-decoded database gives.
anything = st.text(st.characters(codec=None, categories=None), max_size=90)
odd_values = st.one_of(
    st.none(),
    anything,
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.dates(min_value=dt.date(1, 1, 1)),
    st.times(),
    st.datetimes(),
    st.binary(max_size=20),
    st.sampled_from(["", " ", "M", "f", "Other", "0", "CT\\PT", "20240230", "2024-01-31", "25:61:61", "1.5e3"]),
)
# Clean records live in their own UID space (1.2.826...), so noise can never collide with them.
noise_uid = st.one_of(anything, st.integers(1, 30).map(lambda n: f"9.{n}"), st.just(""), st.none())


PATIENT_FIELDS = ("IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientBirthTime", "PatientSex")
STUDY_FIELDS = (
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "ModalitiesInStudy",
)
SERIES_FIELDS = ("Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime")
INSTANCE_FIELDS = ("SOPClassUID", "InstanceNumber")


def attributes(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(names, odd_values))


def record(uids: st.SearchStrategy[Any], ids: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"PatientID": ids, "StudyInstanceUID": uids, "SeriesInstanceUID": uids, "SOPInstanceUID": uids},
        optional=dict.fromkeys(PATIENT_FIELDS + STUDY_FIELDS + SERIES_FIELDS + INSTANCE_FIELDS, odd_values),
    )


@st.composite
def clean_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Well-formed identity (the rest may still be garbage): UIDs unique by construction, studies belong to one
    patient. Attributes are drawn per level, as a PACS holds them."""
    out = []
    root = "1.2.826.0.1.3680043.10"
    for p in range(draw(st.integers(0, 3))):
        patient = draw(attributes(PATIENT_FIELDS)) | {
            "PatientID": draw(st.text("ABCXYZ0123-", min_size=1, max_size=12)),
            "IssuerOfPatientID": draw(st.one_of(st.none(), st.sampled_from(["HOSP-A", "HOSP-B"]))),
        }
        for s in range(draw(st.integers(1, 2))):
            study = draw(attributes(STUDY_FIELDS)) | {"StudyInstanceUID": f"{root}.{p}.{s}"}
            for e in range(draw(st.integers(1, 2))):
                series = draw(attributes(SERIES_FIELDS)) | {"SeriesInstanceUID": f"{root}.{p}.{s}.{e}"}
                for n in range(draw(st.integers(1, 3))):
                    instance = draw(attributes(INSTANCE_FIELDS)) | {"SOPInstanceUID": f"{root}.{p}.{s}.{e}.{n}"}
                    out.append(patient | study | series | instance)
    return out


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    clean=clean_records(),
    noise=st.lists(record(noise_uid, st.one_of(anything, st.none())), max_size=4),
    order=st.randoms(),
)
def test_any_pacs_answer_gives_a_valid_manifest_with_every_instance_once(
    clean: list[dict[str, Any]], noise: list[dict[str, Any]], order: Any
) -> None:
    rows = clean + noise + noise[:2]  # duplicates too
    order.shuffle(rows)
    builder = StudyTreeBuilder()
    builder.add_instances(rows)
    archive = mf.ArchiveQuery(
        arc_id="pacs",
        base_url="https://pacs.example/wado",
        studies=builder.studies(),
        http_tags=[("Authorization", "Bearer a.b.c")],
    )
    xml = mf.manifest_xml([archive], "uid")
    assert validate(xml) == []
    [view] = read_manifest(xml)
    placed = Counter(i.sop_uid for i in view.instances)
    assert all(n == 1 for n in placed.values()), "an instance appears twice"
    # Every record is either in the manifest or reported as left out.
    assert len(view.instances) + sum(builder.skipped.values()) == len(rows)
    # Every clean instance is there, under its own patient, study and series.
    where = {i.sop_uid: (i.patient_id, i.issuer, i.study_uid, i.series_uid) for i in view.instances}
    for r in clean:
        assert where[r["SOPInstanceUID"]] == (
            r["PatientID"],
            r["IssuerOfPatientID"],
            r["StudyInstanceUID"],
            r["SeriesInstanceUID"],
        )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "patientID",
                    "studyUID",
                    "accessionNumber",
                    "seriesUID",
                    "objectUID",
                    "modalitiesInStudy",
                    "containsInDescription",
                    "lowerDateTime",
                    "upperDateTime",
                    "mostRecentResults",
                    "archive",
                    "other",
                ]
            ),
            anything,
        ),
        max_size=6,
    )
)
def test_any_query_string_is_criteria_or_a_clear_400(pairs: list[tuple[str, str]]) -> None:
    raw = "&".join(f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in pairs)
    try:
        criteria_from_query_string(raw)
    except InvalidRequest as exc:
        problems = exc.detail  # a 400 with a reason; any other exception would be a 500
        assert problems


@given(st.text(st.sampled_from(string.ascii_letters + string.digits + "-._~:/?#[]@!&()*+,;=%"), max_size=300))
def test_any_url_we_accept_survives_the_launchers_decode_and_split(url: str) -> None:
    assert manifest_url_of(weasis_uri("https://x/" + url)) == "https://x/" + url


@given(anything)
def test_any_url_is_either_refused_or_survives(url: str) -> None:
    try:
        uri = weasis_uri("https://x/" + url)
    except ValueError:
        return
    assert manifest_url_of(uri) == "https://x/" + url


def test_the_v472_schema_accepts_what_the_reference_accepts() -> None:
    builder = StudyTreeBuilder()
    builder.add_instance(
        {"PatientID": "P", "StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3", "SOPInstanceUID": "1.2.3.4"}
    )
    xml = mf.manifest_xml([mf.ArchiveQuery(arc_id="a", base_url="https://a/w", studies=builder.studies())], "u")
    assert validate(xml) == [] and validate(xml, XSD_472) == []
