"""A real PACS for tests, the local stack and benchmarks: Orthanc 1.10 (Debian) with DICOMweb and WADO-URI.

``OrthancServer`` installs the Debian packages when missing, writes its own configuration in a temporary directory,
starts ``/usr/sbin/Orthanc`` on free loopback ports and stops it on exit. Data sets (``InstanceRecord`` lists) are
loaded with STOW-RS the first time; the resulting Orthanc storage + SQLite index is cached per dataset fingerprint
and Orthanc version, so later runs copy a directory instead of uploading (see ``ensure_storage_cache``).

Ground truth (``instance_truth``) comes from Orthanc's own REST API and each instance's own tags: Orthanc merges
patients on PatientID alone, so its patient resources cannot tell ``WLK-0002``/HOSP-A from ``WLK-0002``/HOSP-B.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import requests

from weasis_link_dev.dataset import InstanceRecord
from weasis_link_dev.dicom_files import cache_root, dataset_fingerprint, ensure_dicom_files, file_lock, repo_root

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = PLUGIN_DIR / "libOrthancDicomWeb.so"
PYTHON_PLUGIN = PLUGIN_DIR / "libOrthancPython.so"
# orthanc-python embeds Debian's python3; the token filter imports Debian's PyJWT + cryptography from there.
DEBIAN_PACKAGES = ("orthanc", "orthanc-dicomweb", "orthanc-python", "dcmtk", "python3-jwt", "python3-cryptography")
TOKEN_FILTER_SCRIPT = Path(__file__).with_name("orthanc_token_filter.py")
HARNESS_HEADER = "X-Weasis-Link-Harness"
LOOPBACK = "127.0.0.1"
# Bump when the way a storage cache is built changes (config affecting ingest, upload method...).
STORAGE_CACHE_VERSION = "1"

StorageAccessOnFind = Literal["Always", "Never", "Answers"]

_packages_ensured = False
_packages_lock = threading.Lock()
_running: weakref.WeakSet[OrthancServer] = weakref.WeakSet()


def ensure_debian_packages(packages: Sequence[str] = DEBIAN_PACKAGES) -> None:
    """Install missing Debian packages with the repository's ``tools/ensure-debian-packages`` (once per process)."""
    global _packages_ensured
    with _packages_lock:
        if _packages_ensured:
            return
        root = repo_root()
        script = root / "tools" / "ensure-debian-packages" if root is not None else None
        if script is None or not script.exists():
            raise RuntimeError("tools/ensure-debian-packages not found: run from a weasis-link checkout")
        subprocess.run([str(script), *packages], check=True)
        _packages_ensured = True


def orthanc_version() -> str:
    """The installed Orthanc package version: part of the storage-cache key (the index schema belongs to it)."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "orthanc"], capture_output=True, text=True, check=False
    )
    if result.returncode == 0 and result.stdout.strip():
        return result.stdout.strip()
    return subprocess.run([str(ORTHANC_BINARY), "--version"], capture_output=True, text=True, check=True).stdout


@dataclasses.dataclass(frozen=True, slots=True)
class BearerTokenAuth:
    """Bearer-token mode: every HTTP request needs an RS256 JWT signed by a key of ``jwks_url``."""

    jwks_url: str
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_seconds: int = 0


def _free_port() -> int:
    # Orthanc 1.10 binds every interface, so the probe binds every interface too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: Orthanc gets SIGTERM if the Python process dies without cleaning up."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _link_or_copy(source: str, destination: str) -> object:
    """Attachments are immutable in Orthanc (written once, deleted by unlink): a hard link is a safe, instant copy.
    The SQLite index is modified in place, so it is always copied."""
    if not Path(source).name.startswith("index"):
        try:
            os.link(source, destination)
        except OSError:  # another filesystem, or links not allowed: fall back to a copy
            pass
        else:
            return destination
    return shutil.copy2(source, destination)


class OrthancServer:
    """A running Orthanc; use as a context manager (``with OrthancServer(datasets=[...]) as pacs: ...``).

    - ``users``: basic auth (``AuthenticationEnabled`` + ``RegisteredUsers``) on every HTTP route (DICOMweb, /wado).
    - ``bearer``: token mode; an orthanc-python request filter validates ``Authorization: Bearer <JWT>``. Refused
      requests get 403 (Orthanc 1.10 filters cannot answer 401). Cannot be combined with ``users``: Orthanc checks
      basic auth before the filter.
    - DIMSE: any calling AET may C-ECHO/C-FIND/C-STORE/C-GET; the called AET is not checked.
    - ``datasets``: loaded before ``__enter__`` returns; ``use_cache`` copies a cached preloaded storage instead of
      uploading (the first run builds that cache).
    """

    def __init__(
        self,
        *,
        datasets: Sequence[Sequence[InstanceRecord]] = (),
        users: Mapping[str, str] | None = None,
        bearer: BearerTokenAuth | None = None,
        aet: str = "ORTHANC",
        name: str = "WEASISLINK",
        storage_access_on_find: StorageAccessOnFind = "Always",
        use_cache: bool = True,
        cache_dir: Path | None = None,
        workdir: Path | None = None,
        extra_config: Mapping[str, Any] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if users and bearer is not None:
            raise ValueError("basic auth and bearer-token mode cannot be combined on Orthanc 1.10")
        self.datasets = tuple(tuple(records) for records in datasets)
        self.users = dict(users or {})
        self.bearer = bearer
        self.name = name
        self.storage_access_on_find = storage_access_on_find
        self.use_cache = use_cache
        self.cache_dir = cache_dir
        self.extra_config = dict(extra_config or {})
        self.startup_timeout = startup_timeout
        self._aet = aet
        self._given_workdir = workdir
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._http_port = 0
        self._dicom_port = 0
        self._harness_key = secrets.token_urlsafe(32)
        self.load_seconds = 0.0  # time spent putting the data in place (upload or cache copy), for reports

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def records(self) -> tuple[InstanceRecord, ...]:
        """Every record loaded at start, all datasets concatenated."""
        return tuple(record for records in self.datasets for record in records)

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self._http_port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb root without trailing slash (QIDO-RS/WADO-RS/STOW-RS): ``<http_url>/dicom-web``."""
        return f"{self.http_url}/dicom-web"

    @property
    def wado_url(self) -> str:
        """WADO-URI endpoint (the ``baseUrl`` of a WADO-URI Weasis manifest)."""
        return f"{self.http_url}/wado"

    @property
    def dicom_host(self) -> str:
        return LOOPBACK

    @property
    def dicom_port(self) -> int:
        return self._dicom_port

    @property
    def aet(self) -> str:
        return self._aet

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("Orthanc is not started")
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / "orthanc.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --------------------------------------------------------------------------------------------- harness access
    def harness_headers(self) -> dict[str, str]:
        """Headers that get the test harness through the token filter (empty in the other modes)."""
        return {HARNESS_HEADER: self._harness_key} if self.bearer is not None else {}

    def session(self) -> requests.Session:
        """A requests session with the harness's credentials (basic auth user or harness key)."""
        session = requests.Session()
        session.headers.update(self.harness_headers())
        if self.users:
            session.auth = next(iter(self.users.items()))
        return session

    def get_json(self, path: str, **params: str) -> Any:
        """GET ``<http_url><path>`` with harness credentials and return the decoded JSON."""
        with self.session() as session:
            response = session.get(self.http_url + path, params=params, timeout=60)
        response.raise_for_status()
        return response.json()

    # ------------------------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("Orthanc already started")
        ensure_debian_packages()
        self._workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="weasis-link-orthanc-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        database = self._workdir / "db"
        started = time.perf_counter()
        preload = self.use_cache and any(self.datasets)
        if preload:
            cached = ensure_storage_cache(self.datasets, cache_dir=self.cache_dir)
            if database.exists():
                shutil.rmtree(database)
            shutil.copytree(cached, database, copy_function=_link_or_copy)
        database.mkdir(exist_ok=True)
        copy_seconds = time.perf_counter() - started
        try:
            self._spawn_until_ready(database)
            if not preload:
                upload_started = time.perf_counter()
                for records in self.datasets:
                    stow_upload(self, records)
                copy_seconds += time.perf_counter() - upload_started
        except BaseException:
            self.stop()
            raise
        self.load_seconds = copy_seconds
        _running.add(self)

    def _config(self, database: Path) -> dict[str, Any]:
        plugins = [str(DICOMWEB_PLUGIN)]
        config: dict[str, Any] = {
            "Name": self.name,
            "StorageDirectory": str(database),
            "IndexDirectory": str(database),
            "StorageCompression": False,
            "HttpPort": self._http_port,
            "HttpThreadsCount": 16,
            "RemoteAccessAllowed": False,  # no bind-address option in 1.10: at least refuse non-local HTTP clients
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "HttpDescribeErrors": True,
            "DicomServerEnabled": True,
            "DicomAet": self._aet,
            "DicomPort": self._dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DefaultEncoding": "Utf8",
            "StorageAccessOnFind": self.storage_access_on_find,
            "SaveJobs": False,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Host": f"{LOOPBACK}:{self._http_port}",  # used in RetrieveURL / BulkDataURI of QIDO answers
                "Ssl": False,
            },
        }
        if self.bearer is not None:
            plugins.append(str(PYTHON_PLUGIN))
            script = self.workdir / TOKEN_FILTER_SCRIPT.name
            # A private copy: the plugin puts the script's folder on sys.path, and this package's folder holds
            # modules (orthanc.py, dataset.py) that must not shadow anything in Orthanc's interpreter.
            shutil.copyfile(TOKEN_FILTER_SCRIPT, script)
            config["PythonScript"] = str(script)
            config["PythonVerbose"] = False
            config["WeasisLinkTokenFilter"] = {
                "JwksUrl": self.bearer.jwks_url,
                "Issuer": self.bearer.issuer,
                "Audience": self.bearer.audience,
                "Algorithms": list(self.bearer.algorithms),
                "LeewaySeconds": self.bearer.leeway_seconds,
                "HarnessKey": self._harness_key,
            }
        config["Plugins"] = plugins
        config.update(self.extra_config)
        return config

    def _environment(self) -> dict[str, str]:
        environment = {
            key: value
            for key, value in os.environ.items()
            # The embedded interpreter is Debian's 3.11: a venv's PYTHONPATH/PYTHONHOME would break it.
            if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
        }
        # Without it, Nagle + delayed ACK add 40-100 ms to every DIMSE message Orthanc sends.
        environment["TCP_NODELAY"] = "1"
        return environment

    def _spawn_until_ready(self, database: Path) -> None:
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between the probe and Orthanc's bind: retry
            self._http_port, self._dicom_port = _free_port(), _free_port()
            config_path = self.workdir / "orthanc.json"
            config_path.write_text(json.dumps(self._config(database), indent=2), encoding="utf-8")
            in_main_thread = threading.current_thread() is threading.main_thread()
            with (self.workdir / "orthanc.stdout").open("ab") as output:
                self._process = subprocess.Popen(
                    [str(ORTHANC_BINARY), str(config_path), f"--logfile={self.log_path}", "--no-jobs"],
                    cwd=self.workdir,
                    env=self._environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    # The death signal follows the *thread* that forked: only safe from the main thread.
                    preexec_fn=_die_with_parent if in_main_thread else None,
                )
            if self._wait_ready():
                return
            last_error = self._log_tail()
            self._terminate()
        raise RuntimeError(f"Orthanc did not start; log tail:\n{last_error}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        with self.session() as session:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    return False
                try:
                    if session.get(f"{self.http_url}/system", timeout=2).status_code == 200:
                        return True
                except requests.ConnectionError:
                    pass
                time.sleep(0.05)
        return False

    def _log_tail(self, lines: int = 30) -> str:
        texts = []
        for path in (self.log_path, self.workdir / "orthanc.stdout"):
            if path.exists():
                texts.append("\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]))
        return "\n".join(texts)

    def signal_stop(self) -> None:
        """Send SIGTERM without waiting. Orthanc takes 2.5-3.5 s to stop (its HTTP server drains for ~2 s): signal
        several servers first, then ``stop()`` each, and they stop in parallel."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def _terminate(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop(self, *, keep_workdir: bool = False) -> None:
        """SIGTERM (SIGKILL after 15 s); removes the temporary directory unless it was given or ``keep_workdir``.
        Set ``WEASIS_LINK_KEEP_ORTHANC=1`` to keep it (config, log, storage) for debugging."""
        self._terminate()
        _running.discard(self)
        keep = keep_workdir or self._given_workdir is not None or os.environ.get("WEASIS_LINK_KEEP_ORTHANC") == "1"
        if self._workdir is not None and not keep:
            shutil.rmtree(self._workdir, ignore_errors=True)


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


# -------------------------------------------------------------------------------------------------- loading data
def stow_upload(
    server: OrthancServer, records: Sequence[InstanceRecord], *, batch_size: int = 50, workers: int = 2
) -> None:
    """Upload ``records`` (as cached Part-10 files) with STOW-RS through dicomweb-client, a few batches at a time."""
    # Test-only dependency, and ~0.4 s of import (numpy): imported when an upload actually happens.
    from dicomweb_client.api import DICOMwebClient
    from pydicom import dcmread

    paths = ensure_dicom_files(records, cache_dir=server.cache_dir)
    batches = [paths[index : index + batch_size] for index in range(0, len(paths), batch_size)]
    local = threading.local()  # one client (and HTTP connection pool) per worker thread

    def store(batch: list[Path]) -> int:
        if not hasattr(local, "client"):
            local.client = DICOMwebClient(url=server.dicomweb_url, session=server.session())
        answer = local.client.store_instances(datasets=[dcmread(path) for path in batch])
        failed = answer.get("FailedSOPSequence") or []
        if failed:
            raise RuntimeError(f"STOW-RS refused {len(failed)} instance(s): {failed[0]}")
        return len(answer.get("ReferencedSOPSequence") or [])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        stored = sum(pool.map(store, batches))
    if stored != len(paths):
        raise RuntimeError(f"STOW-RS stored {stored} of {len(paths)} instances")


def storage_cache_key(datasets: Sequence[Sequence[InstanceRecord]]) -> str:
    parts = [STORAGE_CACHE_VERSION, orthanc_version(), *sorted(dataset_fingerprint(records) for records in datasets)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def ensure_storage_cache(datasets: Sequence[Sequence[InstanceRecord]], *, cache_dir: Path | None = None) -> Path:
    """The cached Orthanc storage+index directory holding ``datasets``; built once (upload + clean stop) if absent.

    Keyed by the datasets' fingerprints and the Orthanc package version. Concurrent runs wait on a file lock.
    """
    base = (cache_dir or cache_root()) / "orthanc-storage"
    entry = base / storage_cache_key(datasets)
    if (entry / ".complete").exists():
        return entry / "db"
    with file_lock(entry.with_suffix(".lock")):
        if (entry / ".complete").exists():
            return entry / "db"
        staging = Path(tempfile.mkdtemp(prefix=entry.name + ".", dir=base))
        try:
            # The builder writes into the staging folder; its clean SIGTERM stop leaves a consistent SQLite index.
            with OrthancServer(datasets=datasets, use_cache=False, workdir=staging, cache_dir=cache_dir):
                pass
            for leftover in staging.iterdir():
                if leftover.name != "db":
                    (shutil.rmtree if leftover.is_dir() else os.remove)(leftover)
            (staging / ".complete").touch()
            if entry.exists():
                shutil.rmtree(entry)
            staging.rename(entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return entry / "db"


# ---------------------------------------------------------------------------------------------------- ground truth
def _text(tags: Mapping[str, Any], keyword: str) -> str | None:
    value = tags.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None  # Type 2 attributes are present but empty when unknown


def _integer(tags: Mapping[str, Any], keyword: str) -> int | None:
    text = _text(tags, keyword)
    return int(text) if text is not None else None


def record_from_tags(tags: Mapping[str, Any]) -> InstanceRecord:
    """An ``InstanceRecord`` from one instance's simplified tags (``/instances/{id}/simplified-tags`` form)."""
    return InstanceRecord(
        patient_id=_text(tags, "PatientID") or "",
        issuer_of_patient_id=_text(tags, "IssuerOfPatientID"),
        patient_name=_text(tags, "PatientName") or "",
        patient_birth_date=_text(tags, "PatientBirthDate"),
        patient_sex=_text(tags, "PatientSex"),
        study_instance_uid=_text(tags, "StudyInstanceUID") or "",
        study_date=_text(tags, "StudyDate"),
        study_time=_text(tags, "StudyTime"),
        accession_number=_text(tags, "AccessionNumber"),
        study_id=_text(tags, "StudyID"),
        study_description=_text(tags, "StudyDescription"),
        referring_physician_name=_text(tags, "ReferringPhysicianName"),
        series_instance_uid=_text(tags, "SeriesInstanceUID") or "",
        modality=_text(tags, "Modality") or "",
        series_number=_integer(tags, "SeriesNumber"),
        series_description=_text(tags, "SeriesDescription"),
        series_date=_text(tags, "SeriesDate"),
        series_time=_text(tags, "SeriesTime"),
        sop_instance_uid=_text(tags, "SOPInstanceUID") or "",
        sop_class_uid=_text(tags, "SOPClassUID") or "",
        instance_number=_integer(tags, "InstanceNumber"),
    )


def instance_count(server: OrthancServer) -> int:
    """Number of instances Orthanc holds (``/statistics``)."""
    return int(server.get_json("/statistics")["CountInstances"])


def instance_truth(server: OrthancServer) -> dict[str, InstanceRecord]:
    """Every stored instance by SOPInstanceUID, built from the instance's own DICOM tags (read from storage).

    One ``/series/{id}/instances-tags?simplify`` call per series: patient attributes come from each file, never from
    Orthanc's patient resource (which merges same-PatientID patients of different issuers).
    """
    series_ids: list[str] = server.get_json("/series")

    def tags_of(series_id: str) -> list[InstanceRecord]:
        tags_by_instance: dict[str, Mapping[str, Any]] = server.get_json(
            f"/series/{series_id}/instances-tags", simplify=""
        )
        return [record_from_tags(tags) for tags in tags_by_instance.values()]

    with ThreadPoolExecutor(max_workers=2) as pool:
        records = [record for batch in pool.map(tags_of, series_ids) for record in batch]
    return {record.sop_instance_uid: record for record in records}


def patient_key(record: InstanceRecord) -> tuple[str, str | None]:
    """The identity of a patient across issuers: (PatientID, IssuerOfPatientID)."""
    return record.patient_id, record.issuer_of_patient_id


@dataclasses.dataclass(frozen=True, slots=True)
class TruthDiff:
    """Manifest (or connector answer) versus expected instances."""

    missing: frozenset[str]  # expected SOPInstanceUIDs absent from the answer
    extra: frozenset[str]  # answered SOPInstanceUIDs that were not expected
    wrong_patient: frozenset[str]  # answered instances attached to another (PatientID, issuer) than their own

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.wrong_patient)


def diff_against_truth(
    answered: Mapping[str, tuple[str, str | None]],
    expected: Iterable[InstanceRecord],
    truth: Mapping[str, InstanceRecord],
) -> TruthDiff:
    """Compare ``answered`` (SOPInstanceUID -> (PatientID, issuer) the answer filed it under) with ``expected``.

    ``truth`` (from ``instance_truth``) decides which patient an answered instance really belongs to, so an instance
    of Martin (WLK-0002/HOSP-B) filed under Müller (WLK-0002/HOSP-A) is reported in ``wrong_patient``.
    """
    expected_uids = {record.sop_instance_uid for record in expected}
    answered_uids = set(answered)
    wrong = {uid for uid, key in answered.items() if uid in truth and patient_key(truth[uid]) != key}
    return TruthDiff(
        missing=frozenset(expected_uids - answered_uids),
        extra=frozenset(answered_uids - expected_uids),
        wrong_patient=frozenset(wrong),
    )


def iter_studies(records: Iterable[InstanceRecord]) -> Iterator[tuple[str, list[InstanceRecord]]]:
    """(StudyInstanceUID, its records) in first-seen order."""
    studies: dict[str, list[InstanceRecord]] = {}
    for record in records:
        studies.setdefault(record.study_instance_uid, []).append(record)
    yield from studies.items()
