"""Patient context: a token issued for patient A sees A only, whatever it asks and whatever the archives answer.
Keys naming another patient are 403, a shared accession number yields A's studies only, filters and wildcards stay
inside A, and (property) no manifest built under a patient context ever lists another patient's instance, even from
archives that ignore the query and answer everything."""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from weasis_link import manifest as mf
from weasis_link.audit import summarize_archives, summarize_manifest
from weasis_link.auth import Caller
from weasis_link.config import AppConfig, load_config
from weasis_link.connectors.base import QueryContext
from weasis_link.criteria import QueryCriteria, criteria_from_pairs
from weasis_link.errors import InvalidRequest, PatientContextRequired, PatientNotInContext
from weasis_link.patient_context import PatientContextConfig, confine_pairs, context_patient
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.study_tree import PatientKey, StudyTreeBuilder

NOW = 1_795_342_530.0
ISSUER = "https://ehr.example.org/fhir"
A = PatientKey("A", "HOSP")
# (patient id, issuer, study uid, accession, modality): B shares an accession number with A; "A" also exists under
# another issuer (another person).
RECORDS = [
    ("A", "HOSP", "1.1", "X1", "CT"),
    ("A", "HOSP", "1.2", "SHARED", "MR"),
    ("B", "HOSP", "2.1", "SHARED", "CT"),
    ("B", "HOSP", "2.2", "B-ONLY", "CT"),
    ("A", "OTHER", "3.1", "X3", "CT"),
]


def record(pid: str, issuer: str | None, study: str, accession: str, modality: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "PatientID": pid,
        "PatientName": f"Name^{pid}",
        "StudyInstanceUID": study,
        "AccessionNumber": accession,
        "SeriesInstanceUID": f"{study}.1",
        "Modality": modality,
        "SOPInstanceUID": f"{study}.1.1",
    }
    if issuer:
        attrs["IssuerOfPatientID"] = issuer
    return attrs


class AnswersEverything:
    """An archive that ignores the query: the worst case the post-query check must survive."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        builder.add_instances(self.records)


class FakeStore:
    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}

    def presigned_url(self, manifest_id: str, expires_in: int) -> str:
        return f"https://s3.example/{manifest_id}"

    def put(self, manifest_id: str, body: bytes, expires_at: dt.datetime) -> None:
        self.bodies[manifest_id] = body


def make_config(tmp_path: Path, archives: int = 1, rule: str = "{claim: patient}") -> AppConfig:
    connectors = "\n".join(
        f"    pacs{i}: {{type: DICOM, dicom-connector: {{calling-aet: W, aet: A{i}, host: h, port: 104}}}}"
        for i in range(archives)
    )
    path = tmp_path / "c.yaml"
    path.write_text(
        f"""
auth:
  issuers:
    - issuer: {ISSUER}
      jwks-url: https://ehr.example.org/jwks
      audiences: [weasis-link]
      patient-context: {rule}
wado: {{url: "https://pacs.example/wado"}}
connector:
  config:
{connectors}
"""
    )
    return load_config(path, environ={}, resolve_secret=lambda r: r)


def service_for(config: AppConfig, answers: list[list[dict[str, Any]]]) -> tuple[ManifestService, FakeStore]:
    settings_ = ServiceSettings.model_validate(
        {"manifest_bucket": "bkt", "oauth_issuer": "i", "oauth_audiences": ["a"], "oauth_jwks_url": "https://i/j"}
    )
    store = FakeStore()
    by_id = {f"pacs{i}": a for i, a in enumerate(answers)}
    service = ManifestService(
        settings_,
        config,
        store,  # type: ignore[arg-type]  # the two methods store_manifest uses
        connector_factory=lambda cid: AnswersEverything(by_id[cid]),
        clock=lambda: NOW,
    )
    return service, store


def caller(config: AppConfig, claims: Mapping[str, Any], *, attach_issuer: bool = True) -> Caller:
    issuer = config.auth.issuers[0] if config.auth is not None and attach_issuer else None
    return Caller("eyJh.eyJz.c2ln", "dr-who", frozenset(), int(NOW) + 3600, {"iss": ISSUER, **claims}, issuer)


def run(service: ManifestService, who: Caller, query: str) -> list[str]:
    """The study UIDs of the manifest a GET /manifests?<query> would store (after the route's confinement)."""
    pairs = [tuple(p.split("=", 1)) for p in query.split("&")]
    criteria = criteria_from_pairs(service.confine_query(pairs, who))  # type: ignore[arg-type]
    result = service.create_manifest(criteria, who)
    return summarize_manifest(service._store.bodies[result.manifest_id]).study_uids  # type: ignore[attr-defined]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[ManifestService, Caller]:
    config = make_config(tmp_path)
    service, _ = service_for(config, [[record(*r) for r in RECORDS]])
    return service, caller(config, {"patient": "A^^^HOSP"})


@pytest.mark.parametrize(
    "query",
    [
        "patientID=B^^^HOSP",
        "patientID=B",
        "patientID=A^^^OTHER",
        "studyUID=2.1",
        "studyUID=1.1,2.1",  # a key naming another patient's study, even among the context patient's
        "seriesUID=2.1.1",
        "objectUID=2.1.1.1",
        "studyUID=3.1",  # same PatientID, other issuer: another person
        "accessionNumber=B-ONLY",
    ],
)
def test_a_key_of_another_patient_is_403(setup: tuple[ManifestService, Caller], query: str) -> None:
    service, who = setup
    with pytest.raises(PatientNotInContext):
        run(service, who, query)


@pytest.mark.parametrize(
    ("query", "studies"),
    [
        ("patientID=A^^^HOSP", ["1.1", "1.2"]),
        ("patientID=A", ["1.1", "1.2"]),  # not A^^^OTHER
        ("patientID=A*", ["1.1", "1.2"]),  # a wildcard stays inside the context
        ("studyUID=1.1", ["1.1"]),
        ("accessionNumber=SHARED", ["1.2"]),  # shared with B: the context patient's only
        ("modalitiesInStudy=CT", ["1.1"]),  # filters only: answered for the context patient
    ],
)
def test_the_context_patient_is_served(setup: tuple[ManifestService, Caller], query: str, studies: list[str]) -> None:
    service, who = setup
    assert sorted(run(service, who, query)) == studies


def test_the_builder_finds_the_rule_again_by_iss(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    service, _ = service_for(config, [[record(*r) for r in RECORDS]])
    who = caller(config, {"patient": "A^^^HOSP"}, attach_issuer=False)  # as BuildRequest.caller() makes it
    assert service.patient_in_context(who) == A
    with pytest.raises(PatientNotInContext):
        run(service, who, "studyUID=2.1")


def test_a_manifest_listing_another_patient_is_never_stored(setup: tuple[ManifestService, Caller]) -> None:
    service, who = setup
    other = gzip.compress(
        b'<manifest xmlns="http://www.weasis.org/xsd/2.5" uid="u"><arcQuery arcId="x" baseUrl="https://p">'
        b'<Patient PatientID="B" IssuerOfPatientID="HOSP" PatientName="N"/></arcQuery></manifest>'
    )
    with pytest.raises(PatientNotInContext):
        service.store_manifest(other, (1, 0, 0, 0), caller=who, summary=summarize_manifest(other))
    assert service._store.bodies == {}  # type: ignore[attr-defined]


def test_a_built_manifest_is_checked_on_every_study_of_its_trees(setup: tuple[ManifestService, Caller]) -> None:
    """A built manifest is checked on the trees it was written from (one study of B among A's is enough)."""
    service, who = setup
    builder = StudyTreeBuilder()
    builder.add_instances([record(*r) for r in RECORDS])
    queries = [mf.ArchiveQuery(arc_id="pacs", base_url="https://p", studies=builder.studies())]
    assert {k.patient_id for k in (s.patient.key for s in builder.studies())} >= {"A", "B"}
    with pytest.raises(PatientNotInContext):
        service.store_manifest(
            mf.manifest_gzip(queries, "u"), (2, 1, 1, 1), caller=who, summary=summarize_archives(queries)
        )
    assert service._store.bodies == {}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("rule", "claims", "expected"),
    [
        ({"claim": "patient"}, {"patient": "A^^^HOSP"}, A),
        ({"claim": "ctx.patient"}, {"ctx": {"patient": "A^^^HOSP&1.2.3&ISO"}}, A),
        ({"claim": "patient", "form": "bare", "assigning-authority": "HOSP"}, {"patient": "A"}, A),
        ({"claim": "patient"}, {}, None),  # optional and absent: no context
    ],
)
def test_the_claim_forms(rule: dict[str, Any], claims: dict[str, Any], expected: PatientKey | None) -> None:
    assert context_patient(PatientContextConfig.model_validate(rule), claims) == expected


@pytest.mark.parametrize(
    ("rule", "claims"),
    [
        ({"claim": "patient", "required": True}, {}),
        ({"claim": "patient"}, {"patient": "A"}),  # id-issuer form without the issuer
        ({"claim": "patient"}, {"patient": "A*^^^HOSP"}),
        ({"claim": "patient"}, {"patient": ["A^^^HOSP"]}),
    ],
)
def test_a_missing_or_unusable_claim_is_refused(rule: dict[str, Any], claims: dict[str, Any]) -> None:
    with pytest.raises(PatientContextRequired):
        context_patient(PatientContextConfig.model_validate(rule), claims)


def test_a_bare_form_needs_its_assigning_authority() -> None:
    with pytest.raises(ValueError, match="assigning-authority"):
        PatientContextConfig.model_validate({"form": "bare"})


def test_without_a_context_nothing_changes() -> None:
    pairs = [("studyUID", "2.1"), ("modalitiesInStudy", "CT")]
    assert confine_pairs(pairs, None) == pairs


# --- property: nothing of another patient, ever ----------------------------------------------------------------
PATIENTS = st.sampled_from([("A", "HOSP"), ("B", "HOSP"), ("A", "OTHER"), ("A", None), ("C", "HOSP")])
UIDS = st.sampled_from(["1.1", "1.2", "2.1", "2.2", "3.1"])
ACCESSIONS = st.sampled_from(["X1", "SHARED", "B-ONLY"])
archive_records = st.lists(
    st.builds(
        lambda p, uid, acc, mod: record(p[0], p[1], uid, acc, mod), PATIENTS, UIDS, ACCESSIONS, st.sampled_from(["CT"])
    ),
    max_size=8,
)
query_pairs = st.lists(
    st.one_of(
        st.tuples(st.just("patientID"), st.sampled_from(["A", "A^^^HOSP", "B^^^HOSP", "A*", "?", "A^^^OTHER"])),
        st.tuples(st.just("studyUID"), UIDS),
        st.tuples(st.just("seriesUID"), UIDS.map(lambda u: f"{u}.1")),
        st.tuples(st.just("objectUID"), UIDS.map(lambda u: f"{u}.1.1")),
        st.tuples(st.just("accessionNumber"), st.sampled_from(["X1", "SHARED", "B-ONLY", "*"])),
        st.tuples(st.just("modalitiesInStudy"), st.just("CT")),
        st.tuples(st.just("mostRecentResults"), st.just("1")),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(archives=st.lists(archive_records, min_size=1, max_size=3), pairs=query_pairs)
def test_no_manifest_under_a_patient_context_holds_another_patients_instance(
    tmp_path_factory: pytest.TempPathFactory, archives: list[list[dict[str, Any]]], pairs: list[tuple[str, str]]
) -> None:
    config = make_config(tmp_path_factory.mktemp("c"), archives=len(archives))
    service, store = service_for(config, archives)
    who = caller(config, {"patient": "A^^^HOSP"})
    try:
        confined = service.confine_query(pairs, who)
        criteria = criteria_from_pairs(confined)
        result = service.create_manifest(criteria, who)
    except PatientNotInContext:
        event("403 patient-not-in-context")
        return  # refused: nothing disclosed
    except InvalidRequest:  # e.g. a lone wildcard: refused before any query
        event("400")
        return
    summary = summarize_manifest(store.bodies[result.manifest_id])
    # Instances sit inside their <Patient>: only A's patient element means only A's instances.
    assert set(summary.patients) <= {"A^^^HOSP"}
    studies_of_a = {
        r["StudyInstanceUID"]
        for a in archives
        for r in a
        if (r["PatientID"], r.get("IssuerOfPatientID")) == ("A", "HOSP")
    }
    assert set(summary.study_uids) <= studies_of_a
    event("served: some of A's studies" if summary.study_uids else "served: nothing")
