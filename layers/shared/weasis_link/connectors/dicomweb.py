"""Connector type DICOM_WEB: QIDO-RS over urllib3 (no dicomweb-client: it needs numpy and pillow at cold start).

Strategy, chosen to cost 1 + (number of studies) requests in the common case:
- Study-level keys (patientID, studyUID, accessionNumber): one study-level query (`/studies?…&includefield=…` for
  what the default answer omits: StudyDescription, IssuerOfPatientID…), then one instance-level query per matching
  study (`/studies/{uid}/instances`), whose answer carries the series attributes. Studies the study-level answer
  already rules out (another issuer, a filter, beyond mostRecentResults) are never asked for their instances. For a
  studyUID-only request the instance queries start at once, alongside the study-level one.
- seriesUID without study-level keys: `/series?SeriesInstanceUID=…` (which names each series' study), then the
  instances of each study restricted to those series.
- objectUID alone: `/instances?SOPInstanceUID=…` at the root, which carries everything.
- A PACS whose instance-level answers lack the series attributes (no Modality) gets one series-level query for that
  study, merged in; one whose instance answers lack even SeriesInstanceUID is walked series by series.
Per-study queries run concurrently on at most `max-concurrency` threads. Every query pages with `limit`/`offset`
when a page comes back full, when the PACS says more results wait (a 299 `Warning` header), or when it returned
fewer instances than the study-level answer counted (a PACS that caps its answers silently).

Query encoding. Orthanc 1.10 does not percent-decode query values, so matching values must arrive in a form every
server reads the same way: UIDs, tags and numbers need no escaping; in PatientID and AccessionNumber (the keys that
allow DICOM wildcards) a character that would need escaping (space, `^`, `,`, `&`, `+`, `%`…) is sent as the
single-character wildcard `?`, and a run of non-ASCII characters as `*`. That widens the match a little on every
PACS, never narrows it, and the service re-checks every answer exactly (`QueryCriteria.restrict`).

Failures: connection refused or unreachable -> `ArchiveUnavailable` (503), connect/read timeout or the deadline ->
`ArchiveTimeout` (504), any HTTP error status or an answer that is not DICOM JSON -> `ArchiveError` (502). urllib3's
`Retry` retries connection errors and 502/503/504 with backoff, but never starts an attempt that could not end
before the query's deadline. Error details (which reach the API's caller) name the failing query's level and
the HTTP status; never a token, a patient identifier, the query string or the PACS's address.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import urllib3
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import Retry

from weasis_link import config as cfg
from weasis_link.connectors.base import QueryContext, log_find
from weasis_link.connectors.dicom_json import (
    INSTANCE_FIELDS,
    ROOT_INSTANCE_FIELDS,
    ROOT_SERIES_FIELDS,
    SERIES_FIELDS,
    STUDY_FIELDS,
    TAGS,
    QidoAttributes,
    first_value,
    lacks_series_attributes,
    lacks_series_uids,
    matching_value,
    query_string,
    uid_chunks,
    uid_of,
)
from weasis_link.connectors.planning import instances_at_once, most_recent, plan_study_queries, worth_fetching
from weasis_link.connectors.qido_credentials import QidoCredentials, qido_credentials
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable
from weasis_link.study_tree import (
    Study,
    StudyTreeBuilder,
)
from weasis_link.upstream_retry import gateway_retry, tls_options

logger = logging.getLogger(__name__)

_WARNING_MORE: Final = ("additional", "more", "remaining")
_MAX_PAGES: Final = 1000
_USER_AGENT: Final = "weasis-link (QIDO-RS)"
_ACCEPT: Final = "application/dicom+json, application/json;q=0.9"


# --- HTTP -------------------------------------------------------------------------------------------------------


class DeadlineRetry(Retry):
    """urllib3's `Retry`, with two limits of ours: it gives up rather than start an attempt (after its backoff) that
    could not finish before `deadline` (time.monotonic()), so retries never push a query past API Gateway's 29 s;
    and a read timeout is final (the PACS is slow: asking again would only double the wait), while other read
    errors (a kept-alive connection the server closed as we reused it) are retried."""

    deadline: float = math.inf
    attempt_seconds: float = 0.0

    def new(self, **kw: Any) -> Self:
        copy = super().new(**kw)
        copy.deadline, copy.attempt_seconds = self.deadline, self.attempt_seconds
        return copy

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: urllib3.BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if isinstance(error, ReadTimeoutError):
            raise MaxRetryError(_pool, url or "", error)  # type: ignore[arg-type]
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if time.monotonic() + retry.get_backoff_time() + self.attempt_seconds > self.deadline:
            # As if the retries were used up: urllib3 then returns the last response, or raises for an error.
            raise MaxRetryError(_pool, url or "", error)  # type: ignore[arg-type]
        return retry


@dataclasses.dataclass(slots=True)
class Page:
    rows: list[dict[str, Any]]
    more: bool  # the PACS says more results can be requested (PS3.18 §8.3.4.4, Warning: 299)


class _Query:
    """One `find`: its deadline, the caller's token and a count of the HTTP requests it sent."""

    def __init__(self, context: QueryContext) -> None:
        self.context = context
        self.requests = 0
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            self.requests += 1

    def remaining(self) -> float:
        return self.context.deadline - time.monotonic()


class DicomWebConnector:
    def __init__(
        self, connector_id: str, settings: cfg.DicomWebConnectorConfig, *, http: urllib3.PoolManager | None = None
    ) -> None:
        self.connector_id = connector_id
        self.settings = settings
        self._root = settings.url.rstrip("/")
        self._credentials: QidoCredentials = qido_credentials(settings.authentication)
        extra = tls_options(settings.url, settings.ca_file)  # one CA store for every connection, not one each
        self._http = http or urllib3.PoolManager(
            num_pools=4,
            maxsize=settings.max_concurrency + 1,
            headers={"Accept": _ACCEPT, "Accept-Encoding": "gzip", "User-Agent": _USER_AGENT},
            **extra,
        )
        self.last_request_count = 0  # HTTP requests of the last find (for logs and the benchmark)

    # --- the query ----------------------------------------------------------------------------------------------
    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        query = _Query(context)
        started = time.perf_counter()
        try:
            if criteria.patients or criteria.study_uids or criteria.accession_numbers:
                self._study_first(query, criteria, builder)
            elif criteria.series_uids:
                self._series_first(query, criteria, builder)
            elif criteria.object_uids:
                self._instances_first(query, criteria, builder)
        finally:
            self.last_request_count = query.requests
            log_find(logger, "QIDO-RS queries done", self.connector_id, started, requests=query.requests)

    def _study_first(self, query: _Query, criteria: QueryCriteria, builder: StudyTreeBuilder) -> None:
        plans = self._study_plans(criteria)
        filters = self._instance_filters(criteria)
        speculative = instances_at_once(criteria)
        totals = _StudyTotals()
        try:
            with _Pool(self.settings.max_concurrency, query) as pool:
                study_answers = [
                    pool.submit(self._paged, query, "/studies", [*p, STUDY_FIELDS], "study") for p in plans
                ]
                instance_answers: dict[str, concurrent.futures.Future[list[QidoAttributes]]] = {}
                if speculative:
                    for uid in criteria.study_uids:
                        instance_answers[uid] = pool.submit(self._study_instances, query, uid, filters, totals)
                wanted: dict[str, Study] = {}
                for answer in study_answers:
                    for row in pool.result(answer):
                        study = builder.add_study(QidoAttributes(row))
                        if study is None or study.study_instance_uid in wanted:
                            continue
                        if worth_fetching(study, criteria):
                            wanted[study.study_instance_uid] = study
                            totals.set(study.study_instance_uid, row)
                totals.close()
                wanted = most_recent(wanted, criteria)
                for uid in wanted:
                    if uid not in instance_answers:
                        instance_answers[uid] = pool.submit(self._study_instances, query, uid, filters, totals)
                for uid, rows in pool.as_completed(instance_answers):
                    study = wanted.get(uid)
                    if study is None:
                        continue  # a speculative query for a UID the PACS does not have
                    for attrs in rows:
                        builder.add_instance(attrs, study)
        finally:
            totals.close()  # never leave a speculative query waiting for totals that will not come

    def _series_first(self, query: _Query, criteria: QueryCriteria, builder: StudyTreeBuilder) -> None:
        chunks = uid_chunks(criteria.series_uids, self.settings.max_uids_per_request)
        object_filter = self._uid_filter("SOPInstanceUID", criteria.object_uids)
        with _Pool(self.settings.max_concurrency, query) as pool:
            answers = [
                pool.submit(
                    self._paged, query, "/series", [("SeriesInstanceUID", ",".join(c)), ROOT_SERIES_FIELDS], "series"
                )
                for c in chunks
            ]
            series_of: dict[str, dict[str, dict[str, Any]]] = {}
            studies: dict[str, Study] = {}
            requested = frozenset(criteria.series_uids)
            for answer in answers:
                for row in pool.result(answer):
                    series_uid = uid_of(row, "SeriesInstanceUID")
                    if series_uid not in requested:
                        continue  # a PACS that ignored the matching key must not make us fetch its whole archive
                    study = builder.add_study(QidoAttributes(row))
                    if study is None or not worth_fetching(study, criteria):
                        continue
                    studies[study.study_instance_uid] = study
                    series_of.setdefault(study.study_instance_uid, {})[series_uid] = row
            tasks = {
                uid: pool.submit(
                    self._study_instances,
                    query,
                    uid,
                    [*self._uid_filter("SeriesInstanceUID", list(series)), *object_filter],
                    None,
                    series,
                )
                for uid, series in series_of.items()
            }
            for uid, rows in pool.as_completed(tasks):
                for attrs in rows:
                    builder.add_instance(attrs, studies[uid])

    def _instances_first(self, query: _Query, criteria: QueryCriteria, builder: StudyTreeBuilder) -> None:
        chunks = uid_chunks(criteria.object_uids, self.settings.max_uids_per_request)
        with _Pool(self.settings.max_concurrency, query) as pool:
            answers = [
                pool.submit(
                    self._paged,
                    query,
                    "/instances",
                    [("SOPInstanceUID", ",".join(c)), ROOT_INSTANCE_FIELDS],
                    "instance",
                )
                for c in chunks
            ]
            requested = frozenset(criteria.object_uids)
            by_study: dict[str, list[dict[str, Any]]] = {}
            for answer in answers:
                for row in pool.result(answer):
                    if uid_of(row, "SOPInstanceUID") not in requested:
                        continue
                    study_uid = uid_of(row, "StudyInstanceUID")
                    if study_uid is not None:
                        by_study.setdefault(study_uid, []).append(row)
                    else:
                        builder.add_instance(QidoAttributes(row))  # counted as skipped by the builder
            incomplete = {uid: rows for uid, rows in by_study.items() if lacks_series_attributes(rows)}
            completions = {uid: pool.submit(self._series_rows, query, uid) for uid in incomplete}
            for uid, rows in by_study.items():
                series = pool.result(completions[uid]) if uid in completions else {}
                for row in rows:
                    series_uid = uid_of(row, "SeriesInstanceUID")
                    builder.add_instance(QidoAttributes(row, series.get(series_uid or "")))

    # --- planning -----------------------------------------------------------------------------------------------
    def _study_plans(self, criteria: QueryCriteria) -> list[list[tuple[str, str]]]:
        """Study-level queries whose answers, together, hold every study the keys can match (planning.py).

        A QIDO key takes one value (a repeated key keeps only the last on Orthanc), so a key with several values
        takes one query per value, except UIDs, which list matching accepts comma-separated.
        """
        dimensions: list[list[tuple[str, str]]] = []
        if criteria.patients:
            ids = dict.fromkeys(matching_value(p.patient_id) for p in criteria.patients)
            dimensions.append([("PatientID", v) for v in ids])
        if criteria.accession_numbers:
            accessions = dict.fromkeys(matching_value(a) for a in criteria.accession_numbers)
            dimensions.append([("AccessionNumber", v) for v in accessions])
        if criteria.study_uids:
            chunks = uid_chunks(criteria.study_uids, self.settings.max_uids_per_request)
            dimensions.append([("StudyInstanceUID", ",".join(c)) for c in chunks])
        return plan_study_queries(dimensions)

    def _uid_filter(self, key: str, uids: Sequence[str]) -> list[tuple[str, str]]:
        """A UID list as a matching key when it fits one request; beyond that it is left out (the service's
        restrict() drops the rest), rather than multiplying the per-study queries."""
        if not uids or len(uids) > self.settings.max_uids_per_request:
            return []
        return [(key, ",".join(uids))]

    def _instance_filters(self, criteria: QueryCriteria) -> list[tuple[str, str]]:
        return [
            *self._uid_filter("SeriesInstanceUID", criteria.series_uids),
            *self._uid_filter("SOPInstanceUID", criteria.object_uids),
        ]

    # --- per-study work (runs on the pool) ------------------------------------------------------------------
    def _study_instances(
        self,
        query: _Query,
        study_uid: str,
        filters: list[tuple[str, str]],
        totals: _StudyTotals | None,
        known_series: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[QidoAttributes]:
        """The instances of one study, with their series attributes."""
        path = f"/studies/{quote(study_uid, safe='.')}/instances"
        expected = None if (filters or totals is None) else totals.wait(study_uid, query.remaining())
        # 404: a study the PACS does not have (a speculative query), or that went away since the study-level query.
        rows = self._paged(query, path, [*filters, INSTANCE_FIELDS], "instance", expected, missing_ok=True)
        if not rows:
            return []
        series = known_series
        walk = lacks_series_uids(rows)
        if series is None and (walk or lacks_series_attributes(rows)):
            # This PACS leaves series attributes out of study-level instance answers: ask the series level.
            series = self._series_rows(query, study_uid)
        if walk and series is not None:
            return self._walk_series(query, study_uid, series, filters)
        if series is None:
            return [QidoAttributes(row) for row in rows]
        return [QidoAttributes(row, series.get(uid_of(row, "SeriesInstanceUID") or "")) for row in rows]

    def _series_rows(self, query: _Query, study_uid: str) -> dict[str, dict[str, Any]]:
        path = f"/studies/{quote(study_uid, safe='.')}/series"
        rows = self._paged(query, path, [SERIES_FIELDS], "series")
        return {uid: row for row in rows if (uid := uid_of(row, "SeriesInstanceUID")) is not None}

    def _walk_series(
        self,
        query: _Query,
        study_uid: str,
        series: Mapping[str, Mapping[str, Any]],
        filters: list[tuple[str, str]],
    ) -> list[QidoAttributes]:
        """Instance answers without SeriesInstanceUID: one query per series (series attributes from the series)."""
        instance_filter = [f for f in filters if f[0] == "SOPInstanceUID"]
        study = quote(study_uid, safe=".")
        out: list[QidoAttributes] = []
        for series_uid, series_row in series.items():
            path = f"/studies/{study}/series/{quote(series_uid, safe='.')}/instances"
            rows = self._paged(query, path, [*instance_filter, INSTANCE_FIELDS], "instance")
            # The series' own row first: its SeriesInstanceUID is the one the path named.
            out.extend(QidoAttributes(series_row, row) for row in rows)
        return out

    # --- HTTP -----------------------------------------------------------------------------------------------
    def _paged(
        self,
        query: _Query,
        path: str,
        params: list[tuple[str, str]],
        level: str,
        expected: int | None = None,
        *,
        missing_ok: bool = False,
    ) -> list[dict[str, Any]]:
        """Every row of a QIDO-RS query, page after page (`limit`/`offset`) while the PACS has more."""
        size = self.settings.page_size
        rows: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            page_params = [*params, ("limit", str(size))]
            if rows:
                page_params.append(("offset", str(len(rows))))
            page = self._get(query, path, page_params, level, missing_ok=missing_ok)
            rows.extend(page.rows)
            if not page.rows:
                break
            if expected is not None:
                # The study-level answer counted the study's instances. Fewer so far, even from a short page,
                # means a PACS that caps its answers without saying so; as many means done, even from a full page.
                if len(rows) < expected:
                    continue
                break
            if len(page.rows) >= size or page.more:
                continue
            break
        else:
            raise ArchiveError(f"the {level}-level QIDO-RS answers did not end after {_MAX_PAGES} pages")
        return rows

    def _get(
        self, query: _Query, path: str, params: list[tuple[str, str]], level: str, *, missing_ok: bool = False
    ) -> Page:
        what = f"{level}-level QIDO-RS query"
        url = f"{self._root}{path}?{query_string(params)}"
        authorization = self._credentials.authorization(query.context.bearer_token)
        response = self._send(query, url, authorization, what)
        if response.status == 401 and self._credentials.renew(authorization):
            # A service token revoked or rotated before its expiry: once more with a fresh one.
            authorization = self._credentials.authorization(query.context.bearer_token)
            response = self._send(query, url, authorization, what)
        if missing_ok and response.status == 404:
            return Page([], False)
        return _page(response, what)

    def _send(self, query: _Query, url: str, authorization: str | None, what: str) -> urllib3.BaseHTTPResponse:
        remaining = query.remaining()
        if remaining <= 0.05:
            raise ArchiveTimeout(f"the PACS did not answer every query in time (at the {what})")
        s = self.settings
        connect, read = min(s.connect_timeout_seconds, remaining), min(s.read_timeout_seconds, remaining)
        # `retries` of each kind; reads too, but never after a read timeout (DeadlineRetry).
        n = s.retries
        retry = gateway_retry(DeadlineRetry, "GET", n, 0.25, connect=n, read=n, status=n, other=0, backoff_max=2.0)
        # Retries only while a whole attempt still fits before the deadline: failures worth retrying (refused
        # connections, a gateway's 502/503/504) come fast, so they get their retries early in the query.
        retry.deadline, retry.attempt_seconds = query.context.deadline, connect + read
        headers = {"Authorization": authorization} if authorization else None
        query.count()
        try:
            return self._http.request(
                "GET",
                url,
                headers=headers,
                timeout=urllib3.Timeout(connect=connect, read=read),
                retries=retry,
                redirect=False,
            )
        except MaxRetryError as exc:
            raise _transport_error(exc.reason, what) from None
        except HTTPError as exc:
            raise _transport_error(exc, what) from None


def _first_line(body: bytes, limit: int = 200) -> str:
    """The first line of an error answer, printable and bounded (an HTML error page must not flood the log)."""
    line = body[:4096].decode("utf-8", "replace").strip().split("\n", 1)[0]
    line = "".join(c if c.isprintable() else " " for c in line).strip()
    return (line[:limit] + "…") if len(line) > limit else line or "(empty answer)"


def _page(response: urllib3.BaseHTTPResponse, what: str) -> Page:
    status = response.status
    if status == 204:  # PS3.18: no matches may be "204 No Content"
        return Page([], False)
    if status != 200:  # the integrator's clue (the PACS says why), in our log only: the caller gets the status
        logger.warning("the PACS answered HTTP %d to the %s: %s", status, what, _first_line(response.data))
    if status in (401, 403):
        raise ArchiveError(f"the PACS refused our credentials (HTTP {status} to the {what})", "refused")
    if 300 <= status < 400:
        raise ArchiveError(f"the PACS redirected the {what} (HTTP {status}): check dicom-web-connector.url")
    if status != 200:
        raise ArchiveError(f"the PACS answered HTTP {status} to the {what}")
    try:
        rows = json.loads(response.data)
    except ValueError:  # includes UnicodeDecodeError
        raise ArchiveError(f"the PACS answered the {what} with something that is not JSON") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ArchiveError(f"the PACS answered the {what} with JSON that is not a list of DICOM objects")
    warning = (response.headers.get("Warning") or "").lower()
    more = "299" in warning and any(word in warning for word in _WARNING_MORE)
    return Page(rows, more)


def _transport_error(reason: BaseException | None, what: str) -> ArchiveError:
    # No host, path or query in the detail: it reaches the API's caller, and the query may carry identifiers.
    if isinstance(reason, ReadTimeoutError):
        return ArchiveTimeout(f"the PACS did not answer the {what} in time")
    # urllib3 makes NewConnectionError a ConnectTimeoutError: tell a refusal from a timeout by the socket error.
    if isinstance(reason, NewConnectionError) and not isinstance(reason.__cause__ or reason.__context__, TimeoutError):
        text = str(reason).lower()
        cause = "connection refused" if "refused" in text else "cannot connect"
        return ArchiveUnavailable(f"the PACS cannot be reached ({cause})")
    if isinstance(reason, ConnectTimeoutError):
        return ArchiveTimeout("connecting to the PACS timed out")
    if isinstance(reason, SSLError):
        return ArchiveUnavailable("the TLS handshake with the PACS failed")
    if isinstance(reason, ProtocolError):
        return ArchiveUnavailable(f"the PACS dropped the connection during the {what}")
    if reason is None:
        return ArchiveError(f"the {what} to the PACS failed")
    return ArchiveError(f"the {what} to the PACS failed ({type(reason).__name__})")


# --- concurrency helpers ------------------------------------------------------------------------------------------


class _StudyTotals:
    """NumberOfStudyRelatedInstances from the study-level answer, for the instance queries' paging: filled by
    the thread that reads the study answers, read by the instance queries (which may start before it is done)."""

    def __init__(self) -> None:
        self._totals: dict[str, int] = {}
        self._done = threading.Event()

    def set(self, study_uid: str, row: Mapping[str, Any]) -> None:
        value = first_value(row.get(TAGS["NumberOfStudyRelatedInstances"]))
        with contextlib.suppress(ValueError):  # absent or not a number: page without it
            self._totals[study_uid] = int(str(value))

    def close(self) -> None:
        self._done.set()

    def wait(self, study_uid: str, timeout: float) -> int | None:
        self._done.wait(max(0.0, timeout))
        return self._totals.get(study_uid)


class _Pool:
    """A bounded thread pool for one `find`, bound to its deadline. On any error the queued work is cancelled and
    the caller does not wait for requests in flight (each ends by its own timeout)."""

    def __init__(self, workers: int, query: _Query) -> None:
        self._query = query
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qido")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self._executor.shutdown(wait=exc_type is None, cancel_futures=True)

    def submit(self, fn: Any, *args: Any) -> concurrent.futures.Future[Any]:
        return self._executor.submit(fn, *args)

    def result(self, future: concurrent.futures.Future[Any]) -> Any:
        try:
            return future.result(timeout=max(0.0, self._query.remaining()) + 0.5)
        except concurrent.futures.TimeoutError:
            raise ArchiveTimeout("the PACS did not answer every query in time") from None

    def as_completed(self, futures: Mapping[str, concurrent.futures.Future[Any]]) -> Iterator[tuple[str, Any]]:
        """(key, result) as each future completes; the first error or the deadline ends it."""
        keys = {future: key for key, future in futures.items()}
        try:
            for future in concurrent.futures.as_completed(keys, timeout=max(0.0, self._query.remaining()) + 0.5):
                yield keys[future], future.result()
        except concurrent.futures.TimeoutError:
            raise ArchiveTimeout("the PACS did not answer every query in time") from None
