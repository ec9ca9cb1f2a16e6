"""The DICOM_WEB connector against a real Orthanc: the whole query matrix, paging, the series-level fallback, query
encoding, QIDO authentication (none, basic, the caller's token, client credentials) and requests per manifest.

Behaviours Orthanc does not have (a PACS that caps its answers, one whose instance answers lack the series
attributes) are produced by `PacsProxy`, a loopback proxy in front of Orthanc that rewrites its answers.

Run: .venv/bin/pytest tests/integration/test_dicomweb_connector.py -q
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from weasis_link import config as cfg
from weasis_link.connectors.dicom_json import TAGS, matching_value, query_string
from weasis_link.connectors.dicomweb import DicomWebConnector
from weasis_link.errors import ArchiveError
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.oauth_client import AccessToken, ClientCredentialsTokenProvider
from weasis_link.study_tree import Study
from weasis_link_dev.archive_query import ask_archive, patients_by_instance
from weasis_link_dev.dataset import InstanceRecord
from weasis_link_dev.dev_keys import DEV_AUDIENCE, DEV_ISSUER, JwksServer, SigningKey, access_token_claims
from weasis_link_dev.loopback_http import Answer as HttpAnswer
from weasis_link_dev.loopback_http import LoopbackServer, Request, stopping
from weasis_link_dev.orthanc import OrthancServer, instance_truth
from weasis_link_dev.pytest_orthanc import BASIC_AUTH_PASSWORD, BASIC_AUTH_USER, BearerFactory
from weasis_link_dev.query_matrix import MatrixCase, check, instance_patients, standard_cases
from weasis_link_dev.synthetic_studies import SHARED_ACCESSION_TWO_PATIENTS, make_uid, standard_dataset

STANDARD = standard_dataset()
CASES = standard_cases(STANDARD)
Answer = dict[str, tuple[str, str | None]]


# --------------------------------------------------------------------------------------------------- helpers
def connector(url: str, **settings: Any) -> DicomWebConnector:
    return DicomWebConnector("pacs", cfg.DicomWebConnectorConfig.model_validate({"url": url, **settings}))


def find(conn: DicomWebConnector, query: str, token: str | None = None) -> tuple[Answer, list[Study]]:
    """What the service does with one archive: find, then restrict to the criteria."""
    studies, builder = ask_archive(conn, query, token=token)
    assert not builder.skipped, builder.skipped
    return patients_by_instance(studies), studies


def expected(case: MatrixCase, records: list[InstanceRecord]) -> set[str]:
    return case.expected(records)


def study_uid_of(pid: str, issuer: str | None, modality: str) -> str:
    return next(
        r.study_instance_uid
        for r in STANDARD
        if (r.patient_id, r.issuer_of_patient_id, r.modality) == (pid, issuer, modality)
    )


@dataclass
class PacsProxy:
    """Loopback HTTP proxy in front of a PACS. Records every request target as sent (raw query string), forwards it
    unchanged (http.client does not re-encode), and can rewrite answers the way other PACS behave:

    - `cap`: at most this many results per answer, whatever `limit` asked (`warn`: say so with a 299 Warning);
    - `strip`: tags removed from study-scoped instance answers (a PACS without series attributes there);
    - `strip_counts`: NumberOfStudyRelatedInstances removed from study answers;
    - `not_found`: 404 instead of an empty answer to a study-scoped query (a PACS that does not know the study).
    """

    upstream: str
    cap: int | None = None
    warn: bool = False
    strip: frozenset[str] = frozenset()
    strip_counts: bool = False
    not_found: bool = False
    targets: list[str] = field(default_factory=list)
    _server: LoopbackServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PacsProxy:
        self._server = LoopbackServer(self._answer).start()
        return self

    def _answer(self, request: Request) -> HttpAnswer:
        status, headers, body = self.forward(request.target, dict(request.headers))
        return HttpAnswer(status, body, headers)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.base_url

    def take_targets(self) -> list[str]:
        with self._lock:
            taken, self.targets = self.targets, []
        return taken

    def forward(self, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.targets.append(target)
        path, _, raw_query = target.partition("?")
        pairs = [p.split("=", 1) if "=" in p else [p, ""] for p in raw_query.split("&") if p]
        capped = self.cap is not None and not path.endswith("/dicom-web/studies")
        if capped:
            assert self.cap is not None
            limit = min([int(v) for k, v in pairs if k == "limit"] or [self.cap])
            pairs = [[k, v] for k, v in pairs if k != "limit"] + [["limit", str(min(limit, self.cap))]]
        forwarded = path + ("?" + "&".join(f"{k}={v}" for k, v in pairs) if pairs else "")
        upstream = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=60)
        keep = {k: v for k, v in headers.items() if k.lower() in ("accept", "authorization")}
        conn.request("GET", forwarded, headers=keep)
        response = conn.getresponse()
        body = response.read()
        conn.close()
        out_headers = {"Content-Type": response.getheader("Content-Type") or "application/dicom+json"}
        if response.status != 200 or not body:
            return response.status, out_headers, body
        rows: list[dict[str, Any]] = json.loads(body)
        if self.not_found and not rows and "/studies/" in path:
            return 404, {"Content-Type": "application/json"}, b'{"message": "unknown study"}'
        if self.strip and "/studies/" in path and path.endswith("/instances") and "/series/" not in path:
            rows = [{k: v for k, v in row.items() if k not in self.strip} for row in rows]
        if self.strip_counts and path.endswith("/studies"):
            rows = [{k: v for k, v in row.items() if k != TAGS["NumberOfStudyRelatedInstances"]} for row in rows]
        if capped and self.warn and len(rows) == self.cap:
            out_headers["Warning"] = '299 proxy: "There are additional results that can be requested"'
        return 200, out_headers, json.dumps(rows).encode()


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., PacsProxy]]:
    def make(upstream: str, **options: Any) -> PacsProxy:
        return PacsProxy(upstream, **options).start()

    with stopping(make) as started:
        yield started


@pytest.fixture(scope="module")
def truth(orthanc: OrthancServer) -> list[InstanceRecord]:
    return list(instance_truth(orthanc).values())


# ------------------------------------------------------------------------------------- query encoding (no PACS)
def test_matching_values_keep_wildcards_and_turn_what_needs_escaping_into_wildcards() -> None:
    assert matching_value("WLK-000*") == "WLK-000*"
    assert matching_value("WLK-000?") == "WLK-000?"
    assert matching_value("A 1,2^3") == "A?1?2?3"
    assert matching_value("a+b&c=d%e#f;g") == "a?b?c?d?e?f?g"
    assert matching_value("MÜLLER-ßÖ1") == "M*LLER-*1"
    # Only non-ASCII letters would be "*" (the whole archive): sent percent-encoded instead.
    assert matching_value("山田") == "%E5%B1%B1%E7%94%B0"
    assert query_string([("includefield", "00081030,00100021"), ("limit", "10")]) == (
        "includefield=00081030,00100021&limit=10"
    )
    assert query_string([("k", "a b&c+d^e")]) == "k=a%20b%26c%2Bd%5Ee"


# --------------------------------------------------------------------------------------------- query matrix
@pytest.mark.integration
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_query_matrix_matches_orthancs_own_answer(
    orthanc: OrthancServer, truth: list[InstanceRecord], case: MatrixCase
) -> None:
    conn = connector(orthanc.dicomweb_url)
    answered, studies = find(conn, case.query)
    want = expected(case, truth)
    result = check(answered, want, instance_patients(truth))
    assert not result.missing, f"{len(result.missing)} missing"
    assert not result.extra, f"{len(result.extra)} extra"
    assert not result.wrong_patient, f"{len(result.wrong_patient)} from another patient"
    assert bool(want) == case.must_match_something
    criteria = criteria_from_query_string(case.query)
    study_queries = max(1, len(criteria.patients), len(criteria.accession_numbers))
    assert conn.last_request_count <= study_queries + max(1, len(studies)) + 1


@pytest.mark.integration
def test_series_attributes_reach_the_manifest(orthanc: OrthancServer) -> None:
    """SeriesDate/SeriesTime come only through includefield: check every series attribute against the files."""
    uid = study_uid_of("WLK-0001", "HOSP-A", "CT")
    _, [study] = find(connector(orthanc.dicomweb_url), f"studyUID={uid}")
    by_series = {r.series_instance_uid: r for r in STANDARD if r.study_instance_uid == uid}
    assert set(study.series) == set(by_series)
    for series in study.series.values():
        record = by_series[series.series_instance_uid]
        assert (series.modality, series.series_number, series.description) == (
            record.modality,
            record.series_number,
            record.series_description,
        )
        assert (series.series_date, series.series_time) == (record.series_date, record.series_time)
    first = next(r for r in STANDARD if r.study_instance_uid == uid)
    assert (study.description, study.patient.key.issuer, study.accession_number) == (
        first.study_description,
        first.issuer_of_patient_id,
        first.accession_number,
    )


# --------------------------------------------------------------------------------------- requests per manifest
@pytest.mark.integration
def test_requests_per_manifest_are_one_plus_the_studies(
    orthanc: OrthancServer, proxy_factory: Callable[..., PacsProxy]
) -> None:
    proxy = proxy_factory(orthanc.http_url)
    conn = connector(proxy.url + "/dicom-web")
    series_uid = next(r.series_instance_uid for r in STANDARD if r.patient_id == "WLK-0003")
    sop_uid = STANDARD[5].sop_instance_uid
    queries = [
        f"studyUID={study_uid_of('WLK-0001', 'HOSP-A', 'CT')}",
        "patientID=WLK-0001",
        "patientID=WLK-0002%5E%5E%5EHOSP-B",  # the issuer rules Müller's studies out before their instance queries
        "patientID=WLK-000*",
        f"accessionNumber={SHARED_ACCESSION_TWO_PATIENTS}",
        f"seriesUID={series_uid}",
        f"objectUID={sop_uid}",
    ]
    for query in queries:
        proxy.take_targets()
        _, studies = find(conn, query)
        sent = proxy.take_targets()
        assert studies
        assert len(sent) <= 1 + len(studies), (query, sent)
        assert conn.last_request_count == len(sent)
    # Only HOSP-B studies were asked for their instances.
    _, studies = find(conn, "patientID=WLK-0002%5E%5E%5EHOSP-B")
    sent = proxy.take_targets()
    asked = {t.split("/studies/")[1].split("/")[0] for t in sent if "/instances" in t}
    assert asked == {s.study_instance_uid for s in studies}
    assert {s.patient.key.issuer for s in studies} == {"HOSP-B"}


@pytest.mark.integration
def test_most_recent_results_skips_the_older_studies_instance_queries(
    orthanc: OrthancServer, proxy_factory: Callable[..., PacsProxy]
) -> None:
    proxy = proxy_factory(orthanc.http_url)
    _, studies = find(connector(proxy.url + "/dicom-web"), "patientID=WLK-0001&mostRecentResults=1")
    assert len(studies) == 1
    assert len(proxy.take_targets()) == 2


@pytest.mark.integration
def test_unknown_study_uids_are_no_error_even_where_the_pacs_answers_404(
    orthanc: OrthancServer, proxy_factory: Callable[..., PacsProxy]
) -> None:
    """A studyUID request starts its instance queries before the study-level answer says which UIDs exist."""
    proxy = proxy_factory(orthanc.http_url, not_found=True)
    conn = connector(proxy.url + "/dicom-web")
    unknown = make_uid("no such study")
    known = study_uid_of("WLK-0003", None, "MR")
    answered, _ = find(conn, f"studyUID={unknown}")
    assert answered == {}
    answered, studies = find(conn, f"studyUID={unknown},{known}")
    assert [s.study_instance_uid for s in studies] == [known]
    assert set(answered) == {r.sop_instance_uid for r in STANDARD if r.study_instance_uid == known}


# --------------------------------------------------------------------------------------------------- paging
@pytest.mark.integration
@pytest.mark.parametrize("name", ["patient", "accession wildcard", "one PatientID, two issuers", "series", "object"])
def test_paging_with_a_tiny_page_size(
    orthanc: OrthancServer, truth: list[InstanceRecord], proxy_factory: Callable[..., PacsProxy], name: str
) -> None:
    case = next(c for c in CASES if c.name == name)
    proxy = proxy_factory(orthanc.http_url)
    answered, _ = find(connector(proxy.url + "/dicom-web", page_size=10), case.query)
    assert check(answered, expected(case, truth), instance_patients(truth)).ok
    sent = proxy.take_targets()
    if name not in ("object",):
        assert any("offset=" in t for t in sent), "a 10-row page size must page"
    assert all("limit=10" in t for t in sent)


@pytest.mark.integration
@pytest.mark.parametrize(("warn", "strip_counts"), [(False, False), (True, True)], ids=["silent-cap", "warning-299"])
def test_a_pacs_that_caps_its_answers_is_paged_to_the_end(
    orthanc: OrthancServer,
    truth: list[InstanceRecord],
    proxy_factory: Callable[..., PacsProxy],
    warn: bool,
    strip_counts: bool,
) -> None:
    """A PACS returning at most 7 results whatever `limit` asks: without a Warning header the study-level count
    (NumberOfStudyRelatedInstances) tells that more are waiting; without that count, the 299 Warning does."""
    proxy = proxy_factory(orthanc.http_url, cap=7, warn=warn, strip_counts=strip_counts)
    case = next(c for c in CASES if c.name == "patient")
    answered, _ = find(connector(proxy.url + "/dicom-web"), case.query)
    assert check(answered, expected(case, truth), instance_patients(truth)).ok
    assert any("offset=" in t for t in proxy.take_targets())


# ------------------------------------------------------------------------------------- series-level fallback
SERIES_ATTRIBUTES = frozenset(
    TAGS[k] for k in ("Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime")
)


@pytest.mark.integration
@pytest.mark.parametrize("also_series_uid", [False, True], ids=["no-series-attributes", "no-series-uid-either"])
def test_series_level_fallback_for_a_pacs_without_series_attributes_in_instance_answers(
    orthanc: OrthancServer,
    truth: list[InstanceRecord],
    proxy_factory: Callable[..., PacsProxy],
    also_series_uid: bool,
) -> None:
    strip = SERIES_ATTRIBUTES | ({TAGS["SeriesInstanceUID"]} if also_series_uid else set())
    proxy = proxy_factory(orthanc.http_url, strip=frozenset(strip))
    uid = study_uid_of("WLK-0001", "HOSP-A", "MR")
    answered, [study] = find(connector(proxy.url + "/dicom-web"), f"studyUID={uid}")
    records = [r for r in truth if r.study_instance_uid == uid]
    assert set(answered) == {r.sop_instance_uid for r in records}
    by_series = {r.series_instance_uid: r for r in records}
    for series in study.series.values():
        record = by_series[series.series_instance_uid]
        assert (series.modality, series.series_number, series.description, series.series_time) == (
            record.modality,
            record.series_number,
            record.series_description,
            record.series_time,
        )
    sent = proxy.take_targets()
    series_queries = [t for t in sent if t.split("?")[0].endswith("/series")]
    assert len(series_queries) == 1
    if also_series_uid:  # walked series by series
        assert sum("/series/" in t and t.split("?")[0].endswith("/instances") for t in sent) == len(study.series)
    else:
        assert len(sent) == 3  # study, instances, series


# ------------------------------------------------------------------------------------------ query encoding
def _odd(pid: str, issuer: str | None, accession: str, index: int) -> InstanceRecord:
    study = make_uid("odd", pid, str(index))
    series = make_uid("odd", study, "s")
    return InstanceRecord(
        patient_id=pid,
        issuer_of_patient_id=issuer,
        patient_name=f"Odd^Patient{index}",
        patient_birth_date="19700101",
        patient_sex="O",
        study_instance_uid=study,
        study_date="20240101",
        study_time="120000",
        accession_number=accession,
        study_id=f"ODD{index}",
        study_description="Odd identifiers",
        referring_physician_name=None,
        series_instance_uid=series,
        modality="OT",
        series_number=1,
        series_description="Odd",
        series_date="20240101",
        series_time="120100",
        sop_instance_uid=make_uid("odd", series, "i"),
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
        instance_number=1,
    )


ODD = [
    _odd("ODD 7,8^9", "HOSP-A", "ACC 1,2^3", 1),
    _odd("ODD_7;8^9", "HOSP-A", "ACC_1;2^3", 2),  # matches the wildcard form of the first: restrict() must drop it
    _odd("ODD+1&2=3%4", None, "ACC+1&2", 3),
    _odd("ÖDD-Ü-5", None, "ACC-5", 4),
    _odd("ODD-6", "HOSP-A", "ACC/6:(x)", 5),
]


@pytest.fixture(scope="module")
def odd_orthanc() -> Iterator[OrthancServer]:
    with OrthancServer(datasets=[ODD]) as server:
        yield server


@pytest.mark.integration
@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("patientID=ODD%207%2C8%5E9", {0}),
        ("patientID=ODD%207%2C8%5E9%5E%5E%5EHOSP-A", {0}),
        ("patientID=ODD_7%3B8%5E9", {1}),
        ("patientID=ODD%2B1%262%3D3%254", {2}),
        ("patientID=%C3%96DD-%C3%9C-5", {3}),
        ("patientID=ODD*", {0, 1, 2, 4}),
        ("patientID=ODD%20*", {0}),
        ("accessionNumber=ACC%201%2C2%5E3", {0}),
        ("accessionNumber=ACC%2F6%3A(x)", {4}),
        ("accessionNumber=ACC%2B1%262", {2}),
        ("accessionNumber=ACC_*", {1}),
    ],
)
def test_identifiers_with_spaces_carets_commas_and_non_ascii_are_found_on_orthanc(
    odd_orthanc: OrthancServer, proxy_factory: Callable[..., PacsProxy], query: str, want: set[int]
) -> None:
    proxy = proxy_factory(odd_orthanc.http_url)
    answered, _ = find(connector(proxy.url + "/dicom-web"), query)
    assert set(answered) == {ODD[i].sop_instance_uid for i in want}
    [study_query] = [t for t in proxy.take_targets() if t.split("?")[0].endswith("/studies")]
    sent = study_query.split("?", 1)[1]
    # Nothing Orthanc would have to percent-decode: raw wildcards only.
    key, value = next(p.split("=", 1) for p in sent.split("&") if p.startswith(("PatientID=", "AccessionNumber=")))
    assert "%" not in value and unquote(value) == value, value
    asked = dict(parse_qsl(query.replace("%5E%5E%5EHOSP-A", "")))
    assert value == matching_value(asked["patientID" if key == "PatientID" else "accessionNumber"])


# ---------------------------------------------------------------------------------------------- QIDO auth
@pytest.mark.integration
def test_qido_basic_auth(orthanc_basic_auth: OrthancServer) -> None:
    auth = {"type": "BASIC", "login": BASIC_AUTH_USER, "password": BASIC_AUTH_PASSWORD}
    answered, _ = find(connector(orthanc_basic_auth.dicomweb_url, authentication=auth), "patientID=WLK-0003")
    assert answered
    with pytest.raises(ArchiveError) as refused:
        find(connector(orthanc_basic_auth.dicomweb_url), "patientID=WLK-0003")
    assert refused.value.kind == "refused"
    assert "401" in refused.value.detail
    wrong = {**auth, "password": "not-the-password"}
    with pytest.raises(ArchiveError) as refused:
        find(connector(orthanc_basic_auth.dicomweb_url, authentication=wrong), "patientID=WLK-0003")
    assert "not-the-password" not in refused.value.detail


@pytest.mark.integration
def test_qido_passes_the_callers_token_on(
    orthanc_bearer_factory: BearerFactory, jwks_server: JwksServer, signing_key: SigningKey
) -> None:
    pacs = orthanc_bearer_factory(jwks_server.url, DEV_ISSUER, DEV_AUDIENCE)
    conn = connector(pacs.dicomweb_url, authentication={"type": "BEARER_PASSTHROUGH"})
    token = signing_key.sign(access_token_claims())
    answered, _ = find(conn, "patientID=WLK-0001", token=token)
    assert len(answered) == sum(r.patient_id == "WLK-0001" for r in STANDARD)
    with pytest.raises(ArchiveError) as refused:
        find(conn, "patientID=WLK-0001", token=signing_key.sign(access_token_claims(audience="another-api")))
    assert refused.value.kind == "refused"
    assert "403" in refused.value.detail  # Orthanc 1.10's request filter can only answer 403
    with pytest.raises(ArchiveError, match="carried none"):
        find(conn, "patientID=WLK-0001", token=None)


@dataclass
class TokenEndpoint:
    """A tiny OAuth2 token endpoint (client credentials, HTTP Basic client authentication) issuing JWTs."""

    key: SigningKey
    client_id: str = "weasis-link"
    client_secret: str = "s3cret:with/odd&chars"  # RFC 6749 form-encodes it for Basic
    lifetime: int = 3600
    requests: list[dict[str, str]] = field(default_factory=list)
    _server: LoopbackServer | None = None

    def _answer(self, request: Request) -> HttpAnswer:
        form = request.form()
        self.requests.append(form)
        expected = base64.b64encode(b"weasis-link:s3cret%3Awith%2Fodd%26chars").decode()
        if request.header("Authorization") != f"Basic {expected}" or form.get("grant_type") != "client_credentials":
            return HttpAnswer.json({"error": "invalid_client"}, 401)
        token = self.key.sign(access_token_claims(subject="weasis-link-service", lifetime=self.lifetime))
        return HttpAnswer.json({"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime})

    def start(self) -> TokenEndpoint:
        self._server = LoopbackServer(self._answer).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url("/oauth2/token")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def token_endpoint(signing_key: SigningKey) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(signing_key).start()
    yield endpoint
    endpoint.stop()


@pytest.mark.integration
def test_qido_with_a_client_credentials_service_token(
    orthanc_bearer_factory: BearerFactory, jwks_server: JwksServer, token_endpoint: TokenEndpoint
) -> None:
    pacs = orthanc_bearer_factory(jwks_server.url, DEV_ISSUER, DEV_AUDIENCE)
    grant = {
        "token-url": token_endpoint.url,
        "client-id": token_endpoint.client_id,
        "client-secret": token_endpoint.client_secret,
        "scope": "pacs.read",
    }
    conn = connector(pacs.dicomweb_url, authentication={"type": "CLIENT_CREDENTIALS", "client-credentials": grant})
    for query in ("patientID=WLK-0001", "patientID=WLK-0003", "patientID=WLK-000*"):
        answered, _ = find(conn, query, token=None)  # the service token, not the caller's
        assert answered
    assert token_endpoint.requests == [{"grant_type": "client_credentials", "scope": "pacs.read"}]  # cached

    bad = {**grant, "client-secret": "wrong"}
    with pytest.raises(ArchiveError) as refused:
        find(
            connector(pacs.dicomweb_url, authentication={"type": "CLIENT_CREDENTIALS", "client-credentials": bad}),
            "patientID=WLK-0001",
        )
    assert refused.value.kind == "refused"
    assert "invalid_client" in refused.value.detail and "wrong" not in refused.value.detail


@pytest.mark.integration
def test_token_provider_renews_before_expiry_and_after_invalidation(token_endpoint: TokenEndpoint) -> None:
    now = [1_000_000.0]
    config = cfg.ClientCredentialsConfig.model_validate(
        {"token-url": token_endpoint.url, "client-id": "weasis-link", "client-secret": token_endpoint.client_secret}
    )
    token_endpoint.lifetime = 120
    provider = ClientCredentialsTokenProvider(config, clock=lambda: now[0])
    first = provider.token()
    assert isinstance(first, AccessToken) and first.expires_at == now[0] + 120
    assert first.value not in repr(first)
    assert provider.token() is first
    now[0] += 80  # 40 s left: still more than the 30 s margin
    assert provider.token() is first
    assert provider.token(min_validity_seconds=60) is not first  # a caller needing a longer life gets a new one
    second = provider.token()
    now[0] += 95  # 25 s left on the second
    third = provider.token()
    assert third is not second
    provider.invalidate(second)  # stale invalidation: ignored
    assert provider.token() is third
    provider.invalidate(third)
    assert provider.token() is not third
    assert len(token_endpoint.requests) == 4

    # Many threads at once: one token request.
    provider = ClientCredentialsTokenProvider(config)
    before = len(token_endpoint.requests)
    threads = [threading.Thread(target=provider.token) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(token_endpoint.requests) == before + 1


@pytest.mark.integration
def test_token_endpoint_failures_are_archive_errors_without_secrets(token_endpoint: TokenEndpoint) -> None:
    from weasis_link.errors import ArchiveUnavailable

    config = cfg.ClientCredentialsConfig.model_validate(
        {"token-url": token_endpoint.url, "client-id": "weasis-link", "client-secret": "wrong-secret"}
    )
    with pytest.raises(ArchiveError) as refused:
        ClientCredentialsTokenProvider(config).token()
    assert (refused.value.kind, refused.value.detail) == (
        "refused",
        "the token endpoint refused the client credentials (invalid_client, HTTP 401)",
    )
    token_endpoint.stop()
    with pytest.raises(ArchiveUnavailable, match="cannot be reached"):
        ClientCredentialsTokenProvider(config).token()
