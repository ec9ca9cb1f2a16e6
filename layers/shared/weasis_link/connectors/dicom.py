"""Connector type DICOM: Study Root C-FIND over DIMSE (pynetdicom), optionally over TLS.

Strategy: one STUDY-level C-FIND finds the matching studies (patient + study attributes), then one IMAGE-level
C-FIND per study brings every instance *with its series attributes*, instead of weasis-pacs-connector's walk (one
SERIES query per study, then one IMAGE query per series). The per-study queries run on at most `max-concurrency`
associations at once, each association reused for several queries.

- Study-level keys (patientID, studyUID, accessionNumber): the keys with one value go into every STUDY query; of
  the keys with several values, only the one with the fewest is queried, one query per value (StudyInstanceUID
  takes them all at once: UID list matching), and the others are left to the study-level check. Studies the STUDY
  answer already rules out (another issuer, a filter, beyond mostRecentResults) are never asked for their images.
  A studyUID-only request names its studies: their IMAGE queries start at once, beside the STUDY query.
- seriesUID / objectUID without study-level keys: one relational IMAGE-level query with the UID lists finds the
  instances and their studies, then one STUDY query (UID list) brings the patient and study attributes.
- `patientID=ID^^^Issuer` sends IssuerOfPatientID as a matching key. Every IMAGE answer also carries the instance's
  own PatientID/IssuerOfPatientID: an instance that names another patient than its study is left out (a PACS that
  reused a study UID for two patients cannot put one patient's images under the other).

Speed: C-FIND answers arrive one identifier per DIMSE message, and most of a naive client's time is spent in
Python per identifier. pynetdicom still does the association, the PDUs and the DIMSE messages, but the Pending
answers are read straight off the association's DIMSE queue (`send_c_find`'s own generator decodes each
identifier into a pydicom Dataset and builds a status Dataset per answer: ~4x our cost), and each identifier is
read with pydicom's raw element generator, converting only the elements we asked for. Attribute values repeated
across the answers of a study (series description, dates...) are decoded once. pynetdicom's per-message logging
is turned off (it also formats request identifiers, i.e. patient IDs, into the log).

Character sets: text and PN values are decoded by pydicom with the answer's Specific Character Set (ISO_IR 192,
ISO_IR 100, ISO 2022 IR 87 with its escape sequences...). A PN becomes its Alphabetic group (`Family^Given`), or
the Ideographic group when there is no alphabetic one, then the Phonetic group: the manifest's PatientName holds
one name, and Weasis shows it as written.

Statuses: Pending -> an identifier; Success -> done; Warning -> done, except 0xB001 (the PACS capped its answer:
a partial list is refused, as is Cancel); Failure -> `ArchiveError` (502). Association rejected, connection
refused, association aborted -> `ArchiveUnavailable` (503). Connect, ACSE or DIMSE timeout, or the request's
deadline -> `ArchiveTimeout` (504); the associations are aborted. Error details name the query level and the DICOM
status, never a matching value.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final, ParamSpec, TypeVar

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import QR_FIND_SERVICE_CLASS_STATUS, code_to_category

from weasis_link import config as cfg
from weasis_link.connectors.base import QueryContext, log_find
from weasis_link.connectors.dicom_identifiers import (
    IMAGE_KEYS,
    STUDY_KEYS,
    Attributes,
    IdentifierReader,
    Level,
    query_identifier,
)
from weasis_link.connectors.planning import instances_at_once, most_recent, plan_study_queries, worth_fetching
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable, ConfigurationError
from weasis_link.study_tree import (
    SKIP_PATIENT_CONFLICT,
    Study,
    StudyTreeBuilder,
)

logger = logging.getLogger(__name__)

# pynetdicom's standard event handlers log every DIMSE message and, with the identifier switches, every request and
# answer identifier (patient IDs and names): off for the whole process, which only this connector uses pynetdicom in.
pynetdicom_config.LOG_HANDLER_LEVEL = "none"
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
# Its remaining INFO lines ("Requesting Association"...) repeat per association what our own log line says once.
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

STUDY_ROOT_FIND: Final = "1.2.840.10008.5.1.4.1.2.2.1"
TRANSFER_SYNTAXES: Final = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

_PENDING: Final = frozenset({0xFF00, 0xFF01})
_CAPPED: Final = 0xB001  # "Matching reached response limit": a partial answer
_POLL_SECONDS: Final = 0.2  # how often a waiting query looks at the deadline and at its siblings' failures
_P = ParamSpec("_P")
_R = TypeVar("_R")
# The pool of one find (its associations run on these threads).
Executor = concurrent.futures.ThreadPoolExecutor


def study_plans(criteria: QueryCriteria) -> list[dict[str, str | list[str]]]:
    """The STUDY-level matching keys of each query whose answers, together, hold every study the keys can match."""
    dimensions: list[list[dict[str, str | list[str]]]] = []
    if criteria.patients:
        patients: list[dict[str, str | list[str]]] = []
        for p in dict.fromkeys(criteria.patients):
            keys: dict[str, str | list[str]] = {"PatientID": p.patient_id}
            if p.issuer is not None:
                keys["IssuerOfPatientID"] = p.issuer
            patients.append(keys)
        dimensions.append(patients)
    if criteria.accession_numbers:
        dimensions.append([{"AccessionNumber": a} for a in criteria.accession_numbers])
    if criteria.study_uids:
        dimensions.append([{"StudyInstanceUID": list(criteria.study_uids)}])
    return [{k: v for keys in plan for k, v in keys.items()} for plan in plan_study_queries(dimensions)]


# --- associations -----------------------------------------------------------------------------------------------


class _Failed(Exception):
    """Raised in a worker when another query of the same find already failed: stop quietly."""


class _Find:
    """One `find`: its deadline, its associations (one per worker thread) and the first failure, if any."""

    def __init__(self, connector: DicomConnector, context: QueryContext) -> None:
        self.connector = connector
        self.deadline = context.deadline
        self.failure: ArchiveError | None = None
        self.queries = 0
        self.answers = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._associations: list[Association] = []
        remaining = max(0.1, self.remaining())
        settings = connector.settings
        # The longest wait for the next answer. pynetdicom checks its own network (idle) timeout in the association
        # reactor, which is paused while answers are read off the DIMSE queue: it is enforced here instead.
        self.answer_timeout = min(settings.dimse_timeout_seconds, settings.network_timeout_seconds, remaining)
        ae = AE(ae_title=settings.calling_aet)
        ae.add_requested_context(STUDY_ROOT_FIND, list(TRANSFER_SYNTAXES))
        ae.connection_timeout = min(settings.connect_timeout_seconds, remaining)
        ae.acse_timeout = min(settings.acse_timeout_seconds, remaining)
        ae.network_timeout = settings.network_timeout_seconds
        ae.dimse_timeout = _POLL_SECONDS
        self._ae = ae

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def fail(self, error: ArchiveError) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = error

    def count(self, answers: int) -> None:
        with self._lock:
            self.queries += 1
            self.answers += answers

    # --- one association per worker thread ----------------------------------------------------------------------
    def association(self) -> tuple[Association, PresentationContext, IdentifierReader]:
        held: tuple[Association, PresentationContext, IdentifierReader] | None = getattr(self._local, "held", None)
        if held is not None:
            return held
        assoc = self._open()
        context = next((c for c in assoc.accepted_contexts if c.abstract_syntax == STUDY_ROOT_FIND), None)
        if context is None:
            assoc.release()
            raise ArchiveError("the archive does not accept Study Root C-FIND (no presentation context accepted)")
        held = (assoc, context, IdentifierReader())
        self._local.held = held
        return held

    def _open(self) -> Association:
        s = self.connector.settings
        started = time.monotonic()
        tls = self.connector._tls
        assoc = self._ae.associate(s.host, s.port, ae_title=s.aet, tls_args=tls)
        with self._lock:
            self._associations.append(assoc)
        if assoc.is_established:
            return assoc
        elapsed = time.monotonic() - started
        if assoc.is_rejected:
            raise ArchiveUnavailable(f"the archive rejected the association ({rejection_text(assoc)})")
        limit = min(self._ae.connection_timeout or 0.0, self._ae.acse_timeout or 0.0)
        if elapsed >= 0.9 * limit or self.remaining() <= 0:
            raise ArchiveTimeout(f"the archive did not accept the association within {elapsed:.1f} s")
        if assoc.acceptor.primitive is None:
            raise ArchiveUnavailable("the archive cannot be reached (connection refused or closed)")
        raise ArchiveUnavailable("the archive aborted the association")

    def close(self, *, abort: bool) -> None:
        with self._lock:
            associations, self._associations = self._associations, []
        for assoc in associations:
            if not assoc.is_established:
                continue
            if abort:
                assoc.abort()
            else:
                assoc.release()

    # --- one C-FIND ---------------------------------------------------------------------------------------------
    def query(self, level: Level, identifier: Dataset, on_answer: Callable[[Attributes], None]) -> int:
        """Send one C-FIND and hand each Pending identifier to `on_answer`; the number of answers."""
        assoc, context, reader = self.association()
        implicit = context.transfer_syntax[0] == ImplicitVRLittleEndian
        msg_id = getattr(self._local, "msg_id", 0) % 0xFFFF + 1
        self._local.msg_id = msg_id
        # send_c_find sends the request and pauses the association's reactor; its response generator is not used
        # (see the module docstring): the answers are taken from the DIMSE queue below, and release() or abort()
        # later work on the paused reactor as after any send_c_find.
        assoc.send_c_find(identifier, STUDY_ROOT_FIND, msg_id=msg_id)
        answers = 0
        waited_since = time.monotonic()
        while True:
            if self.failure is not None:
                raise _Failed
            _, message = assoc.dimse.get_msg(block=True)  # waits at most _POLL_SECONDS (the AE's dimse_timeout)
            if message is None:
                self._check_waiting(assoc, level, time.monotonic() - waited_since)
                continue
            waited_since = time.monotonic()
            if not isinstance(message, C_FIND) or not message.is_valid_response:
                assoc.abort()
                raise ArchiveError(f"the archive sent an invalid answer to a {level}-level C-FIND")
            status = message.Status
            if status in _PENDING:
                if message.Identifier is not None:
                    on_answer(reader.read(message.Identifier, implicit))
                    answers += 1
                if self.remaining() <= 0:
                    assoc.abort()
                    raise ArchiveTimeout(f"the {level}-level C-FIND did not finish before the deadline")
                continue
            self.count(answers)
            _check_final_status(level, status)
            return answers

    def _check_waiting(self, assoc: Association, level: Level, waited: float) -> None:
        if assoc.is_aborted or assoc.acse.is_aborted() or not assoc.dul.is_alive():
            raise ArchiveUnavailable(f"the archive aborted the association during a {level}-level C-FIND")
        if waited >= self.answer_timeout or self.remaining() <= 0:
            assoc.abort()
            raise ArchiveTimeout(f"the archive sent no {level}-level C-FIND answer for {waited:.1f} s")


def _check_final_status(level: Level, status: int | None) -> None:
    if status is None:
        raise ArchiveError(f"the archive ended a {level}-level C-FIND without a status")
    category = code_to_category(status)
    meaning = QR_FIND_SERVICE_CLASS_STATUS.get(status, (category, "unknown status"))[1]
    if category == "Success" or (category == "Warning" and status != _CAPPED):
        return
    if category == "Cancel":
        raise ArchiveError(f"the archive cancelled a {level}-level C-FIND (status 0x{status:04X})")
    if status == _CAPPED:
        raise ArchiveError(f"the archive capped its answer to a {level}-level C-FIND (status 0x{status:04X})")
    raise ArchiveError(f"the archive refused a {level}-level C-FIND: status 0x{status:04X} ({meaning})")


# --- the connector ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _StudySlot:
    """Where the IMAGE answers of one study go. A speculative query (studyUID only) starts before the STUDY answer
    says whether the study exists and is wanted: its answers wait until `resolved` is set (`study` None: dropped)."""

    study: Study | None = None
    resolved: threading.Event = dataclasses.field(default_factory=threading.Event)


class DicomConnector:
    def __init__(self, connector_id: str, settings: cfg.DicomConnectorConfig) -> None:
        self.connector_id = connector_id
        self.settings = settings
        self._tls = _tls_args(connector_id, settings)  # built once: certificate files are read at cold start
        self.last_request_count = 0  # C-FIND requests of the last find (logs, benchmark)

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        run = _Find(self, context)
        started = time.perf_counter()
        failed = True
        try:
            with concurrent.futures.ThreadPoolExecutor(
                max_workers=self.settings.max_concurrency, thread_name_prefix=f"cfind-{self.connector_id}"
            ) as pool:
                try:
                    if criteria.patients or criteria.study_uids or criteria.accession_numbers:
                        self._study_first(run, pool, criteria, builder)
                    elif criteria.series_uids or criteria.object_uids:
                        self._instances_first(run, pool, criteria, builder)
                except BaseException:
                    run.fail(ArchiveError("cancelled"))  # stops the other workers at their next answer or poll
                    raise
            failed = False
        except _Failed:
            pass
        finally:
            run.close(abort=failed)
            self.last_request_count = run.queries
            counts = {"queries": run.queries, "answers": run.answers}
            log_find(logger, "C-FIND queries done", self.connector_id, started, **counts)
        if failed and run.failure is not None:
            raise run.failure

    # --- strategies ---------------------------------------------------------------------------------------------
    def _study_first(self, run: _Find, pool: Executor, criteria: QueryCriteria, builder: StudyTreeBuilder) -> None:
        lock = threading.Lock()
        image_filter = _image_filter(criteria)
        slots: dict[str, _StudySlot] = {}
        image_tasks: list[concurrent.futures.Future[int]] = []

        def fetch_images(uid: str, study: Study | None = None) -> None:
            slot = slots[uid] = _StudySlot(study)
            if study is not None:
                slot.resolved.set()
            task = pool.submit(_guarded, run, self._study_images, run, uid, image_filter, slot, builder, lock)
            image_tasks.append(task)

        study_rows: list[Attributes] = []
        # Submitted first: the pool runs tasks in order, and a speculative IMAGE query ends by waiting for them.
        study_tasks = [
            pool.submit(
                _guarded, run, run.query, "STUDY", query_identifier("STUDY", plan, STUDY_KEYS), study_rows.append
            )
            for plan in study_plans(criteria)
        ]
        if instances_at_once(criteria):  # speculative IMAGE queries
            for uid in criteria.study_uids:
                fetch_images(uid)
        _wait(run, study_tasks)
        wanted: dict[str, Study] = {}
        with lock:
            for row in study_rows:
                study = builder.add_study(row)
                if study is not None and study.study_instance_uid not in wanted and worth_fetching(study, criteria):
                    wanted[study.study_instance_uid] = study
        wanted = most_recent(wanted, criteria)
        for uid, slot in slots.items():  # the speculative queries learn whether their study is wanted
            slot.study = wanted.get(uid)
            slot.resolved.set()
        for uid, study in wanted.items():
            if uid not in slots:
                fetch_images(uid, study)
        _wait(run, image_tasks)

    def _instances_first(self, run: _Find, pool: Executor, criteria: QueryCriteria, builder: StudyTreeBuilder) -> None:
        """seriesUID/objectUID only: one relational IMAGE query finds the instances, one STUDY query their studies."""
        rows: list[Attributes] = []
        image_query = query_identifier("IMAGE", _image_filter(criteria), IMAGE_KEYS)
        _wait(run, [pool.submit(_guarded, run, run.query, "IMAGE", image_query, rows.append)])
        wanted_series = frozenset(criteria.series_uids)
        wanted_objects = frozenset(criteria.object_uids)
        # A PACS that ignored a matching key must not make us ask for its whole archive.
        rows = [
            r
            for r in rows
            if (not wanted_series or r.get("SeriesInstanceUID") in wanted_series)
            and (not wanted_objects or r.get("SOPInstanceUID") in wanted_objects)
        ]
        study_uids = list(dict.fromkeys(str(r["StudyInstanceUID"]) for r in rows if r.get("StudyInstanceUID")))
        if not study_uids:
            return
        study_rows: list[Attributes] = []
        matching: dict[str, str | list[str]] = {"StudyInstanceUID": study_uids}
        study_query = query_identifier("STUDY", matching, STUDY_KEYS)
        _wait(run, [pool.submit(_guarded, run, run.query, "STUDY", study_query, study_rows.append)])
        studies: dict[str, Study] = {}
        for row in study_rows:
            study = builder.add_study(row)
            if study is not None and worth_fetching(study, criteria):
                studies[study.study_instance_uid] = study
        for row in rows:
            study = studies.get(str(row.get("StudyInstanceUID")))
            if study is not None:
                _add_instance(builder, row, study)

    def _study_images(
        self,
        run: _Find,
        study_uid: str,
        image_filter: Mapping[str, str | list[str]],
        slot: _StudySlot,
        builder: StudyTreeBuilder,
        lock: threading.Lock,
    ) -> int:
        """The IMAGE-level query of one study, its answers added to the builder as they come."""
        pending: list[Attributes] = []

        def on_answer(row: Attributes) -> None:
            if not slot.resolved.is_set():
                pending.append(row)  # a speculative query whose STUDY answer is not there yet
                return
            if pending:
                flush()
            if slot.study is not None:
                with lock:
                    _add_instance(builder, row, slot.study)

        def flush() -> None:
            rows = pending[:]
            pending.clear()
            if slot.study is not None:
                with lock:
                    for row in rows:
                        _add_instance(builder, row, slot.study)

        identifier = query_identifier("IMAGE", {"StudyInstanceUID": study_uid, **image_filter}, IMAGE_KEYS)
        answers = run.query("IMAGE", identifier, on_answer)
        if pending:
            while not slot.resolved.wait(_POLL_SECONDS):
                if run.failure is not None:
                    raise _Failed
            flush()
        return answers


def _image_filter(criteria: QueryCriteria) -> dict[str, str | list[str]]:
    keys: dict[str, str | list[str]] = {}
    if criteria.series_uids:
        keys["SeriesInstanceUID"] = list(criteria.series_uids)
    if criteria.object_uids:
        keys["SOPInstanceUID"] = list(criteria.object_uids)
    return keys


def _add_instance(builder: StudyTreeBuilder, row: Attributes, study: Study) -> None:
    """Add an IMAGE answer under its study, unless it names another patient than the study's."""
    key = study.patient.key
    patient_id = row.get("PatientID")
    issuer = row.get("IssuerOfPatientID")
    # The issuer is compared only when the STUDY answer gave one: a PACS may fill it at one level only.
    if (patient_id and str(patient_id).strip() != key.patient_id) or (
        key.issuer is not None and issuer and str(issuer).strip() != key.issuer
    ):
        builder.skipped[SKIP_PATIENT_CONFLICT] += 1
        return
    builder.add_instance(row, study)


def _guarded(run: _Find, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Run one worker task; an archive error is recorded as the find's failure, which stops the other tasks."""
    try:
        return fn(*args, **kwargs)
    except ArchiveError as exc:
        run.fail(exc)
        raise _Failed from None


def _wait(run: _Find, tasks: Iterable[concurrent.futures.Future[int]]) -> None:
    """Wait for the tasks; raise _Failed as soon as one query of this find failed (or past the deadline: the
    workers enforce it themselves, this is the safety net), and a worker's unexpected exception as it is."""
    pending = set(tasks)
    while pending:
        done, pending = concurrent.futures.wait(
            pending, timeout=max(0.0, run.remaining()) + 2 * _POLL_SECONDS, return_when="FIRST_EXCEPTION"
        )
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
        if pending and run.remaining() <= 0:
            run.fail(ArchiveTimeout("the C-FIND queries did not finish before the deadline"))
            raise _Failed


def rejection_text(assoc: Association) -> str:
    """A-ASSOCIATE-RJ as the PACS said it: result, source and reason ("rejected permanent by the service user:
    called AE title not recognised"), what an integrator needs to fix a calling/called AE title."""
    primitive = assoc.acceptor.primitive
    reason = getattr(primitive, "reason_str", None) or "no reason given"
    result = getattr(primitive, "result_str", None)
    source = getattr(primitive, "source_str", None)
    if result and source:
        return f"{result} by the {source}: {reason}".lower()
    return str(reason).lower()


def _tls_args(connector_id: str, settings: cfg.DicomConnectorConfig) -> tuple[ssl.SSLContext, str] | None:
    """The TLS context for every association of this connector, built once (at cold start)."""
    tls = settings.tls
    if tls is None:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
        context.check_hostname = tls.verify_hostname
        if tls.cert_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"connector '{connector_id}': dicom-connector.tls cannot be loaded ({type(exc).__name__}: {exc})"
        ) from None
    return context, tls.server_name or settings.host
