"""The DICOM connector (C-FIND) against Orthanc's DICOM port: the whole query matrix, and against small pynetdicom
SCPs on 127.0.0.1 for what Orthanc does not do (other character sets, Failure/Cancel/capped statuses, a refused
association, an archive that stops answering or aborts, TLS with client certificates, implicit VR answers).

Run: .venv/bin/pytest tests/integration/test_dicom_connector.py -q
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from weasis_link import config as cfg
from weasis_link.connectors.base import QueryContext
from weasis_link.connectors.dicom import DicomConnector
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable, ConfigurationError
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.study_tree import SKIP_PATIENT_CONFLICT, Study, StudyTreeBuilder
from weasis_link_dev.archive_query import ask_archive, patients_by_instance
from weasis_link_dev.loopback_http import stopping
from weasis_link_dev.orthanc import OrthancServer, instance_truth
from weasis_link_dev.query_matrix import MatrixCase, check, instance_patients, standard_cases
from weasis_link_dev.synthetic_studies import standard_dataset

pytestmark = pytest.mark.integration

STANDARD = standard_dataset()
CASES = standard_cases(STANDARD)
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
Answer = dict[str, tuple[str, str | None]]


def connector(port: int, aet: str = "ORTHANC", **settings: Any) -> DicomConnector:
    values = {"calling-aet": "WEASIS-LINK", "aet": aet, "host": "127.0.0.1", "port": port, **settings}
    return DicomConnector("pacs", cfg.DicomConnectorConfig.model_validate(values))


# The connector's defaults, to tell a configured timeout from the default one.
DEFAULTS = cfg.DicomConnectorConfig.model_validate(
    {"calling-aet": "WEASIS-LINK", "aet": "PACS", "host": "x", "port": 104}
)


def reported_seconds(detail: str) -> float:
    """The wait a timeout's message reports ("... within 0.5 s", "... for 0.6 s"): the connector's own measure."""
    found = re.search(r"([0-9]+(?:\.[0-9]+)?) s\b", detail)
    assert found is not None, detail
    return float(found[1])


def find(conn: DicomConnector, query: str, seconds: float = 20) -> tuple[Answer, list[Study], StudyTreeBuilder]:
    """What the service does with one archive: find, then restrict to the criteria."""
    studies, builder = ask_archive(conn, query, seconds=seconds)
    return patients_by_instance(studies), studies, builder


# ------------------------------------------------------------------------------------------------ the matrix
@pytest.fixture(scope="module")
def truth(orthanc: OrthancServer) -> dict[str, tuple[str, str | None]]:
    return dict(instance_patients(instance_truth(orthanc).values()))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_query_matrix_over_c_find(
    orthanc: OrthancServer, truth: dict[str, tuple[str, str | None]], case: MatrixCase
) -> None:
    answered, _, builder = find(connector(orthanc.dicom_port), case.query)
    expected = case.expected(STANDARD)
    result = check(answered, expected, truth)
    assert result.ok, (len(result.missing), len(result.extra), len(result.wrong_patient))
    assert not builder.skipped
    if case.must_match_something:
        assert expected


def test_manifest_attributes_come_from_the_archive(orthanc: OrthancServer) -> None:
    """Study, series and instance attributes as Orthanc holds them: UTF-8 names, dates, numbers, SOP classes."""
    martin = "WLK-0002^^^HOSP-B".replace("^", "%5E")
    _, studies, _ = find(connector(orthanc.dicom_port), f"patientID={martin}")
    records = {r.sop_instance_uid: r for r in STANDARD}
    assert {s.patient.name for s in studies} == {"Martin^Claire"}
    for study in studies:
        for series in study.series.values():
            for instance in series.instances:
                r = records[instance.sop_instance_uid]
                assert (study.study_date, study.study_time, study.description) == (
                    r.study_date,
                    r.study_time,
                    r.study_description,
                )
                assert (study.accession_number, study.study_id, study.referring_physician_name) == (
                    r.accession_number,
                    r.study_id,
                    r.referring_physician_name,
                )
                assert (series.modality, series.series_number, series.description) == (
                    r.modality,
                    r.series_number,
                    r.series_description,
                )
                assert (series.series_date, series.series_time) == (r.series_date, r.series_time)
                assert (instance.sop_class_uid, instance.instance_number) == (r.sop_class_uid, r.instance_number)
    _, yamada, _ = find(connector(orthanc.dicom_port), "patientID=WLK-0010")
    assert {s.patient.name for s in yamada} == {"山田^太郎"}
    assert {s.description for s in yamada} == {"胸部CT Thorax", "読影レポート"}


@pytest.mark.parametrize(
    ("query", "queries"),
    [
        ("patientID=WLK-0001", 1 + 3),  # one STUDY query, one IMAGE query per study
        ("patientID=WLK-0001&modalitiesInStudy=MR", 1 + 1),  # the STUDY answer rules the CT and CR studies out
        ("patientID=WLK-0002&mostRecentResults=1", 1 + 2),  # the most recent study of each of the two patients
        ("accessionNumber=ACC-2023-0777", 1 + 2),
        ("studyUID={study}", 1 + 1),
        ("seriesUID={series}", 1 + 1),  # one relational IMAGE query, one STUDY query
        ("objectUID={object}", 1 + 1),
    ],
)
def test_one_image_level_query_per_study(orthanc: OrthancServer, query: str, queries: int) -> None:
    record = next(r for r in STANDARD if r.patient_id == "WLK-0003" and r.modality == "MR")
    conn = connector(orthanc.dicom_port)
    answered, _, _ = find(
        conn,
        query.format(
            study=record.study_instance_uid, series=record.series_instance_uid, object=record.sop_instance_uid
        ),
    )
    assert answered
    assert conn.last_request_count == queries


@pytest.mark.timeout(900)  # the first user of orthanc_large generates and seeds it
def test_large_study_over_several_associations(orthanc_large: OrthancServer) -> None:
    """1,000 instances of one study, and both large studies at once on two associations."""
    by_study: dict[str, set[str]] = {}
    for r in orthanc_large.records:
        by_study.setdefault(r.study_instance_uid, set()).add(r.sop_instance_uid)
    small, big = sorted(by_study, key=lambda uid: len(by_study[uid]))
    conn = connector(orthanc_large.dicom_port, **{"max-concurrency": 2})
    answered, _, _ = find(conn, f"studyUID={small}")
    assert set(answered) == by_study[small]
    answered, studies, _ = find(conn, f"studyUID={small},{big}", seconds=60)
    assert set(answered) == by_study[small] | by_study[big]
    assert sum(len(s.series) for s in studies) == 20


# ------------------------------------------------------------------------------------------ a scripted SCP
FindHandler = Callable[[Dataset, "FakePacs"], Iterator[tuple[int, Dataset | None]]]


@dataclass
class FakePacs:
    """A pynetdicom C-FIND SCP on 127.0.0.1 whose answers a test scripts (`handler`), counting its associations."""

    handler: FindHandler
    aet: str = "FAKEPACS"
    require_called_aet: bool = False
    implicit_only: bool = False
    ssl_context: ssl.SSLContext | None = None
    requests: list[Dataset] = field(default_factory=list)
    current: Any = None  # the association of the C-FIND being answered
    associations: int = 0
    most_at_once: int = 0
    aborted: threading.Event = field(default_factory=threading.Event)
    _open: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadedAssociationServer | None = None

    def start(self) -> FakePacs:
        ae = AE(ae_title=self.aet)
        syntaxes = [ImplicitVRLittleEndian] if self.implicit_only else [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        ae.add_supported_context(STUDY_ROOT_FIND, syntaxes)
        ae.require_called_aet = self.require_called_aet
        handlers = [
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_RELEASED, self._on_closed),
            (evt.EVT_ABORTED, self._on_aborted),
        ]
        self._server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=handlers, ssl_context=self.ssl_context
        )
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def _on_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        identifier = event.identifier
        self.requests.append(identifier)
        self.current = event.assoc
        yield from self.handler(identifier, self)

    def _on_established(self, event: evt.Event) -> None:
        with self._lock:
            self.associations += 1
            self._open += 1
            self.most_at_once = max(self.most_at_once, self._open)

    def _on_closed(self, event: evt.Event) -> None:
        with self._lock:
            self._open -= 1

    def _on_aborted(self, event: evt.Event) -> None:
        self.aborted.set()
        self._on_closed(event)


@pytest.fixture
def fake_pacs() -> Iterator[Callable[..., FakePacs]]:
    def make(handler: FindHandler, **options: Any) -> FakePacs:
        return FakePacs(handler, **options).start()

    with stopping(make) as started:
        yield started


STUDY_UID = "1.2.826.0.1.3680043.8.498.77"


def answer(charset: str | list[str] | None = "ISO_IR 192", **values: Any) -> Dataset:
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def one_study_pacs(
    patient: dict[str, Any], study: dict[str, Any] | None = None, charset: str | list[str] | None = "ISO_IR 192"
) -> FindHandler:
    """A PACS with one study of two instances, answering in `charset`."""

    def handle(request: Dataset, pacs: FakePacs) -> Iterator[tuple[int, Dataset | None]]:
        if request.QueryRetrieveLevel == "STUDY":
            values = {"PatientID": "P1", "StudyInstanceUID": STUDY_UID, "StudyDate": "20240102", **patient}
            yield 0xFF00, answer(charset, **values, **(study or {}))
        else:
            for n in (1, 2):
                yield (
                    0xFF00,
                    answer(
                        charset,
                        StudyInstanceUID=STUDY_UID,
                        SeriesInstanceUID=f"{STUDY_UID}.1",
                        Modality="CT",
                        SeriesNumber="1",
                        SeriesDescription=(study or {}).get("StudyDescription", "Series"),
                        SOPInstanceUID=f"{STUDY_UID}.1.{n}",
                        SOPClassUID="1.2.840.10008.5.1.4.1.1.2",
                        InstanceNumber=str(n),
                    ),
                )
        yield 0x0000, None

    return handle


# ------------------------------------------------------------------------------------ character sets and PN
@pytest.mark.parametrize(
    ("charset", "name", "description", "expected_name"),
    [
        ("ISO_IR 192", "Müller^Jürgen", "Crâne", "Müller^Jürgen"),
        ("ISO_IR 100", "Müller^Jürgen", "Crâne", "Müller^Jürgen"),  # Latin-1 on the wire
        ("ISO_IR 144", "Иванов^Пётр", "Голова", "Иванов^Пётр"),  # Cyrillic
        ("GB18030", "王^小东", "头部", "王^小东"),
        # Japanese with ISO 2022 escape sequences: the Alphabetic group is the name shown.
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "胸部", "Yamada^Tarou"),
        # No Alphabetic group: the Ideographic one.
        (["", "ISO 2022 IR 87"], "=山田^太郎", "胸部", "山田^太郎"),
        (None, "Smith^John", "Chest", "Smith^John"),  # no Specific Character Set: the default repertoire
    ],
)
def test_character_sets_and_person_names(
    fake_pacs: Callable[..., FakePacs],
    charset: str | list[str] | None,
    name: str,
    description: str,
    expected_name: str,
) -> None:
    if charset == "ISO_IR 144":
        pytest.importorskip("encodings.iso8859_5")
    pacs = fake_pacs(one_study_pacs({"PatientName": name}, {"StudyDescription": description}, charset))
    answered, studies, builder = find(connector(pacs.port, "FAKEPACS"), "patientID=P1")
    assert len(answered) == 2 and not builder.skipped
    [study] = studies
    assert study.patient.name == expected_name
    assert study.description == description
    assert {s.description for s in study.series.values()} == {description}


def test_implicit_vr_answers(fake_pacs: Callable[..., FakePacs]) -> None:
    """A PACS that accepts only Implicit VR Little Endian: element VRs come from the data dictionary."""
    pacs = fake_pacs(
        one_study_pacs({"PatientName": "Ødegård^Åse"}, {"StudyDescription": "MR Hjerne"}), implicit_only=True
    )
    answered, [study], _ = find(connector(pacs.port, "FAKEPACS"), "patientID=P1")
    assert len(answered) == 2
    assert (study.patient.name, study.description, study.study_date) == ("Ødegård^Åse", "MR Hjerne", "20240102")
    assert [i.instance_number for s in study.series.values() for i in s.instances] == [1, 2]


def test_matching_keys_sent(fake_pacs: Callable[..., FakePacs]) -> None:
    """patientID=ID^^^Issuer becomes PatientID + IssuerOfPatientID matching keys; a non-ASCII ID says its charset."""
    pacs = fake_pacs(one_study_pacs({"PatientName": "X^Y"}))
    find(connector(pacs.port, "FAKEPACS"), "patientID=P1%5E%5E%5EHOSP-A&accessionNumber=A*")
    study_query = pacs.requests[0]
    assert (study_query.QueryRetrieveLevel, study_query.PatientID, study_query.IssuerOfPatientID) == (
        "STUDY",
        "P1",
        "HOSP-A",
    )
    assert study_query.AccessionNumber == "A*"
    assert "SpecificCharacterSet" not in study_query
    pacs.requests.clear()
    find(connector(pacs.port, "FAKEPACS"), "patientID=J%C3%BCrgen-1")
    assert pacs.requests[0].PatientID == "Jürgen-1"
    assert pacs.requests[0].SpecificCharacterSet == "ISO_IR 192"


def test_instances_of_another_patient_are_left_out(fake_pacs: Callable[..., FakePacs]) -> None:
    """A PACS that filed a second patient's images under the same study UID: they never join the first patient."""

    def handle(request: Dataset, pacs: FakePacs) -> Iterator[tuple[int, Dataset | None]]:
        if request.QueryRetrieveLevel == "STUDY":
            yield 0xFF00, answer(PatientID="P1", IssuerOfPatientID="A", StudyInstanceUID=STUDY_UID)
        else:
            for n, (pid, issuer) in enumerate([("P1", "A"), ("P2", "A"), ("P1", "B"), ("P1", "A")]):
                yield (
                    0xFF00,
                    answer(
                        PatientID=pid,
                        IssuerOfPatientID=issuer,
                        StudyInstanceUID=STUDY_UID,
                        SeriesInstanceUID=f"{STUDY_UID}.1",
                        SOPInstanceUID=f"{STUDY_UID}.1.{n}",
                    ),
                )
        yield 0x0000, None

    answered, _, builder = find(connector(fake_pacs(handle).port, "FAKEPACS"), f"studyUID={STUDY_UID}")
    assert set(answered) == {f"{STUDY_UID}.1.0", f"{STUDY_UID}.1.3"}
    assert builder.skipped == {SKIP_PATIENT_CONFLICT: 2}


# ------------------------------------------------------------------------------------------------ statuses
def final_status(status: int, after: int = 1) -> FindHandler:
    def handle(request: Dataset, pacs: FakePacs) -> Iterator[tuple[int, Dataset | None]]:
        for n in range(after):
            yield 0xFF00, answer(PatientID="P1", StudyInstanceUID=f"{STUDY_UID}.{n}")
        yield status, None

    return handle


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (0xC001, "refused a STUDY-level C-FIND: status 0xC001 (Unable to Process)"),
        (0xA700, "status 0xA700 (Refused: Out of Resources)"),
        (0xA900, "status 0xA900 (Identifier Does Not Match SOP Class)"),
        (0xFE00, "cancelled a STUDY-level C-FIND"),
        (0xB001, "capped its answer"),  # a partial list is never shown as the whole
    ],
)
def test_failure_statuses_are_archive_errors(fake_pacs: Callable[..., FakePacs], status: int, message: str) -> None:
    pacs = fake_pacs(final_status(status))
    with pytest.raises(ArchiveError) as raised:
        find(connector(pacs.port, "FAKEPACS"), "patientID=P1")
    assert raised.value.kind == "bad-response"  # -> 502
    assert message in raised.value.detail
    assert "P1" not in raised.value.detail


def test_warning_status_ends_the_answer(fake_pacs: Callable[..., FakePacs]) -> None:
    pacs = fake_pacs(final_status(0x0107, after=2))  # a Warning other than "capped": the answer is complete
    criteria = criteria_from_query_string("patientID=P1")
    builder = _RecordingBuilder()
    conn = connector(pacs.port, "FAKEPACS")
    conn.find(criteria, QueryContext(None, time.monotonic() + 10), builder)
    # The answers carry no instances, so the finished tree is empty: what matters is that the answers given before
    # the Warning were taken (the second one included), not refused as a failed query.
    assert builder.studies_seen == [f"{STUDY_UID}.0", f"{STUDY_UID}.1"]
    assert conn.last_request_count == 1 + 2  # and both were asked for their images


class _RecordingBuilder(StudyTreeBuilder):
    """Remembers the study-level answers handed to the tree."""

    def __init__(self) -> None:
        super().__init__()
        self.studies_seen: list[str] = []

    def add_study(self, attrs: Mapping[str, object]) -> Study | None:
        self.studies_seen.append(str(attrs.get("StudyInstanceUID")))
        return super().add_study(attrs)


def test_rejected_association_is_unavailable(fake_pacs: Callable[..., FakePacs]) -> None:
    pacs = fake_pacs(final_status(0x0000), require_called_aet=True)
    with pytest.raises(ArchiveUnavailable) as raised:
        find(connector(pacs.port, "WRONG-AET"), "patientID=P1")
    assert "rejected the association" in raised.value.detail
    assert "called ae title not recognised" in raised.value.detail  # the PACS's reason, for the integrator
    assert raised.value.kind == "unavailable"  # -> 503
    answered, _, _ = find(connector(pacs.port, "FAKEPACS"), "patientID=P1")  # the right called AET is accepted
    assert answered == {}


def test_closed_port_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens once the probe is closed
    with pytest.raises(ArchiveUnavailable, match="cannot be reached"):  # refused at once: not a timeout
        find(connector(port), "patientID=P1")


def test_silent_archive_is_an_acse_timeout() -> None:
    """A TCP listener that never answers the A-ASSOCIATE-RQ: 504 after acse-timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(ArchiveTimeout, match="did not accept the association") as raised:
            find(connector(listener.getsockname()[1], **{"acse-timeout-seconds": 0.5}), "patientID=P1", seconds=60)
    # The connector's own measure of the wait: the configured 0.5 s ended it, not the 10 s default (the deadline
    # is a minute away).
    assert 0.4 <= reported_seconds(raised.value.detail) < DEFAULTS.acse_timeout_seconds


@pytest.mark.parametrize(
    "setting",
    [
        "dimse-timeout-seconds",
        # The longest silence on an association: it ends a wait the DIMSE timeout (15 s by default) still allows.
        "network-timeout-seconds",
    ],
)
def test_a_silent_answer_ends_at_the_configured_timeout_and_aborts(
    fake_pacs: Callable[..., FakePacs], setting: str
) -> None:
    release = threading.Event()

    def stall(request: Dataset, pacs: FakePacs) -> Iterator[tuple[int, Dataset | None]]:
        yield 0xFF00, answer(PatientID="P1", StudyInstanceUID=STUDY_UID)
        release.wait(60)  # then silence: no further answer (until the test ends)
        yield 0x0000, None

    pacs = fake_pacs(stall)
    try:
        with pytest.raises(ArchiveTimeout, match="no STUDY-level C-FIND answer") as raised:
            find(connector(pacs.port, "FAKEPACS", **{setting: 0.6}), "patientID=P1", seconds=60)
        # The configured 0.6 s ended the wait, not the 15 s default nor the deadline a minute away.
        assert 0.6 <= reported_seconds(raised.value.detail) < DEFAULTS.dimse_timeout_seconds
    finally:
        release.set()
    # The SCP sees the A-ABORT once its handler returns: the association was aborted, not left open.
    assert pacs.aborted.wait(5)


def test_deadline_is_a_timeout(fake_pacs: Callable[..., FakePacs]) -> None:
    def slow(request: Dataset, pacs: FakePacs) -> Iterator[tuple[int, Dataset | None]]:
        for n in range(100):
            time.sleep(0.05)
            yield 0xFF00, answer(PatientID="P1", StudyInstanceUID=f"{STUDY_UID}.{n}")
        yield 0x0000, None

    pacs = fake_pacs(slow)
    # 100 answers 50 ms apart take 5 s: only the 0.8 s deadline can end this C-FIND with a timeout (each answer
    # comes well within the DIMSE timeout).
    with pytest.raises(ArchiveTimeout, match="before the deadline"):
        find(connector(pacs.port, "FAKEPACS"), "patientID=P1", seconds=0.8)


def test_scp_crash_is_an_archive_error(fake_pacs: Callable[..., FakePacs]) -> None:
    def crash(request: Dataset, pacs: FakePacs) -> Iterator[tuple[int, Dataset | None]]:
        yield 0xFF00, answer(PatientID="P1", StudyInstanceUID=STUDY_UID)
        raise RuntimeError("the SCP crashes")  # pynetdicom answers a handler exception with a Failure status

    with pytest.raises(ArchiveError, match="status 0xC311"):
        find(connector(fake_pacs(crash).port, "FAKEPACS"), "patientID=P1")


def test_archive_aborting_is_unavailable(fake_pacs: Callable[..., FakePacs]) -> None:
    def hang_up(request: Dataset, pacs: FakePacs) -> Iterator[tuple[int, Dataset | None]]:
        yield 0xFF00, answer(PatientID="P1", StudyInstanceUID=STUDY_UID)
        time.sleep(0.3)
        pacs.current.abort()

    with pytest.raises(ArchiveUnavailable, match="aborted the association"):
        find(connector(fake_pacs(hang_up).port, "FAKEPACS"), "patientID=P1")


def test_concurrency_is_bounded(fake_pacs: Callable[..., FakePacs]) -> None:
    """Twelve studies: their IMAGE queries share at most max-concurrency associations."""

    def handle(request: Dataset, pacs: FakePacs) -> Iterator[tuple[int, Dataset | None]]:
        if request.QueryRetrieveLevel == "STUDY":
            for n in range(12):
                yield 0xFF00, answer(PatientID="P1", StudyInstanceUID=f"{STUDY_UID}.{n}")
        else:
            uid = request.StudyInstanceUID
            time.sleep(0.1)
            yield 0xFF00, answer(StudyInstanceUID=uid, SeriesInstanceUID=f"{uid}.1", SOPInstanceUID=f"{uid}.1.1")
        yield 0x0000, None

    pacs = fake_pacs(handle)
    conn = connector(pacs.port, "FAKEPACS", **{"max-concurrency": 3})
    answered, _, _ = find(conn, "patientID=P1")
    assert len(answered) == 12
    assert conn.last_request_count == 13
    assert pacs.most_at_once <= 3
    assert pacs.associations <= 3  # each association served several queries


# --------------------------------------------------------------------------------------------------------- TLS
@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _key_and_cert(
    directory: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, **san: Any
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if san:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in san.get("dns", [])]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in san.get("ip", [])]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = _key_and_cert(d, "ca", None)
    _key_and_cert(d, "server", ca, dns=["pacs.test"], ip=["127.0.0.1"])
    _key_and_cert(d, "client", ca, dns=["weasis-link.test"])
    _key_and_cert(d, "other-ca", None)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key", d / "other-ca.pem")


def tls_pacs(fake_pacs: Callable[..., FakePacs], pki: Pki) -> FakePacs:
    """An SCP that speaks only TLS and requires a client certificate signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    return fake_pacs(one_study_pacs({"PatientName": "Tls^Patient"}), ssl_context=context)


def tls_settings(pki: Pki, **overrides: Any) -> dict[str, Any]:
    tls = {"ca-file": str(pki.ca), "cert-file": str(pki.client_cert), "key-file": str(pki.client_key)}
    return {"tls": {**tls, **overrides}}


def test_tls_with_client_certificate(fake_pacs: Callable[..., FakePacs], pki: Pki) -> None:
    pacs = tls_pacs(fake_pacs, pki)
    answered, [study], _ = find(connector(pacs.port, "FAKEPACS", **tls_settings(pki)), "patientID=P1")
    assert len(answered) == 2 and study.patient.name == "Tls^Patient"
    # The certificate names pacs.test: a PACS reached by address is checked against server-name.
    by_name = connector(pacs.port, "FAKEPACS", **tls_settings(pki, **{"server-name": "pacs.test"}))
    assert len(find(by_name, "patientID=P1")[0]) == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"ca-file": "other"},  # a PACS certificate our CA did not sign
        {"cert-file": None, "key-file": None},  # no client certificate
        {"server-name": "other.test"},  # a certificate for another name
    ],
)
def test_tls_refusals_are_unavailable(fake_pacs: Callable[..., FakePacs], pki: Pki, overrides: dict[str, Any]) -> None:
    pacs = tls_pacs(fake_pacs, pki)
    if overrides.get("ca-file") == "other":
        overrides = {"ca-file": str(pki.other_ca)}
    settings = tls_settings(pki, **overrides)
    settings["tls"] = {k: v for k, v in settings["tls"].items() if v is not None}
    with pytest.raises(ArchiveUnavailable):
        find(connector(pacs.port, "FAKEPACS", **settings), "patientID=P1", seconds=5)


def test_verify_hostname_false_accepts_another_name_but_still_checks_the_chain(
    fake_pacs: Callable[..., FakePacs], pki: Pki
) -> None:
    pacs = tls_pacs(fake_pacs, pki)
    # The same name that test_tls_refusals_are_unavailable sees refused is accepted without the name check...
    lenient = tls_settings(pki, **{"server-name": "other.test", "verify-hostname": False})
    answered, [study], _ = find(connector(pacs.port, "FAKEPACS", **lenient), "patientID=P1")
    assert len(answered) == 2 and study.patient.name == "Tls^Patient"
    # ...but a certificate our CA did not sign is still refused: only the name check is off.
    other_ca = tls_settings(pki, **{"verify-hostname": False, "ca-file": str(pki.other_ca)})
    with pytest.raises(ArchiveUnavailable):
        find(connector(pacs.port, "FAKEPACS", **other_ca), "patientID=P1", seconds=5)


def test_plain_client_against_a_tls_archive_is_unavailable(fake_pacs: Callable[..., FakePacs], pki: Pki) -> None:
    pacs = tls_pacs(fake_pacs, pki)
    with pytest.raises(ArchiveError) as raised:
        find(connector(pacs.port, "FAKEPACS", **{"acse-timeout-seconds": 1}), "patientID=P1", seconds=5)
    assert raised.value.kind in ("unavailable", "timeout")


def test_missing_tls_files_are_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"dicom-connector\.tls"):
        connector(104, tls={"ca-file": str(tmp_path / "absent.pem")})


@pytest.mark.parametrize(
    "settings",
    [
        {"calling-aet": "   "},  # only spaces
        {"aet": "BACK\\SLASH"},  # backslash: the DICOM value separator
        {"aet": "A" * 17},  # longer than 16
        {"port": 0},
        {"tls": {"cert-file": "client.pem"}},  # a certificate without its key
        {"tls": {"server-name": ""}},
    ],
)
def test_bad_dicom_settings_are_refused(settings: dict[str, Any]) -> None:
    values = {"calling-aet": "WEASIS-LINK", "aet": "PACS", "host": "pacs.example", "port": 104, **settings}
    with pytest.raises(ValueError, match="validation error"):
        cfg.DicomConnectorConfig.model_validate(values)
