"""The use case: criteria + caller -> archives queried concurrently -> manifest -> S3 -> URLs.

`ManifestService.create_manifest` is the one domain function the API's manifest routes call. It selects the
connectors (`archive=` or `connector.default`), refuses criteria a connector has deactivated, queries the
connectors concurrently within one deadline, re-checks every answer against the criteria, builds one arcQuery per
archive with the caller's token injected as the connector's `wado.authentication` says, stores the gzipped
manifest under a fresh random key and presigns it. When every archive fails nothing is stored.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from weasis_link import manifest as mf
from weasis_link.auth import Caller
from weasis_link.config import AppConfig, Wado
from weasis_link.connectors import Connector, QueryContext, create_connector
from weasis_link.criteria import KEY_PARAMETERS, QueryCriteria, SearchKey
from weasis_link.errors import (
    AllArchivesFailed,
    ArchiveError,
    ArchiveFailure,
    CriterionDeactivated,
    UnknownArchive,
)
from weasis_link.launch_uri import LaunchOptions, weasis_uri
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, new_manifest_id
from weasis_link.study_tree import Study, StudyTreeBuilder

logger = logging.getLogger(__name__)

PARAMETER_BY_KEY: Final = {key: name for name, key in KEY_PARAMETERS.items()}
NO_RESULT_TITLE: Final = "No images found"


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    """What one archive gave: its studies, or why it failed, and how long it took."""

    archive_id: str
    studies: list[Study]
    failure: ArchiveFailure | None
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ManifestResult:
    manifest_id: str
    manifest_url: str
    weasis_url: str
    expires_at: dt.datetime
    patients: int
    studies: int
    series: int
    instances: int
    archives: list[ArchiveOutcome]
    warnings: list[str]

    @property
    def failed_archives(self) -> list[ArchiveFailure]:
        return [a.failure for a in self.archives if a.failure is not None]


@dataclass(frozen=True, slots=True)
class BuiltManifest:
    """A manifest document before storage (also what the asynchronous builder produces)."""

    body_gzip: bytes
    archive_queries: list[mf.ArchiveQuery]
    outcomes: list[ArchiveOutcome]
    warnings: list[str]


ConnectorFactory = Callable[[str], Connector]


class ManifestService:
    def __init__(
        self,
        settings: ServiceSettings,
        config: AppConfig,
        store: ManifestStore,
        connector_factory: ConnectorFactory | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._config = config
        self._store = store
        self._clock = clock
        self._connectors: dict[str, Connector] = {}
        self._factory = connector_factory or (lambda cid: create_connector(cid, config.connector.config[cid]))
        for unknown in config.unknown_default_ids:
            logger.warning("connector.default names an unknown connector; ignored", extra={"connector": unknown})

    # --- the use case ---------------------------------------------------------------------------------------
    def create_manifest(
        self, criteria: QueryCriteria, caller: Caller, launch: LaunchOptions | None = None
    ) -> ManifestResult:
        built = self.build(criteria, caller)
        expires_at = self._expiry()
        manifest_id = new_manifest_id(expires_at)
        # Presign before the write, so that nothing after PutObject can fail and leave an orphan behind.
        manifest_url = self._store.presigned_url(manifest_id, self._settings.presign_expires_seconds)
        launch_uri = weasis_uri(manifest_url, launch)
        self._store.put(manifest_id, built.body_gzip, expires_at)
        patients, studies, series, instances = mf.count(built.archive_queries)
        return ManifestResult(
            manifest_id=manifest_id,
            manifest_url=manifest_url,
            weasis_url=launch_uri,
            expires_at=expires_at,
            patients=patients,
            studies=studies,
            series=series,
            instances=instances,
            archives=built.outcomes,
            warnings=built.warnings,
        )

    def build(self, criteria: QueryCriteria, caller: Caller) -> BuiltManifest:
        """Query the archives and build the gzipped manifest (no storage)."""
        archive_ids = self.select_archives(criteria)
        context = QueryContext(
            bearer_token=caller.token, deadline=time.monotonic() + self._settings.archive_deadline_seconds
        )
        outcomes = self._query_all(archive_ids, criteria, context)
        failures = [o.failure for o in outcomes if o.failure is not None]
        if len(failures) == len(outcomes):
            raise AllArchivesFailed(failures)
        token_warning = self._token_warning(caller)
        warnings = [token_warning] if token_warning else []
        queries = [self._archive_query(o, caller, warnings) for o in outcomes]
        if token_warning:
            for query in queries:
                if any(key == "Authorization" for key, _ in query.http_tags):
                    query.add_message(mf.Message("Access token expires soon", token_warning, "WARN"))
        body = mf.manifest_gzip(queries, str(uuid.uuid4()))
        return BuiltManifest(body, queries, outcomes, warnings)

    # --- archive selection ----------------------------------------------------------------------------------
    def select_archives(self, criteria: QueryCriteria) -> list[str]:
        """`archive=` ids (must exist) or connector.default; then drop archives that refuse a key used."""
        configured = self._config.connector.config
        if criteria.archives:
            unknown = [a for a in criteria.archives if a not in configured]
            if unknown:
                raise UnknownArchive(
                    f"Unknown archive: {', '.join(unknown)}. Configured archives: {', '.join(configured)}."
                )
            selected = list(criteria.archives)
        else:
            selected = self._config.default_connector_ids
        allowed = [a for a in selected if not self._refused_keys(a, criteria)]
        if not allowed:
            refused = sorted({k for a in selected for k in self._refused_keys(a, criteria)})
            names = ", ".join(PARAMETER_BY_KEY[k] for k in refused)
            raise CriterionDeactivated(f"Searching by {names} is deactivated for the selected archives.")
        return allowed

    def _refused_keys(self, archive_id: str, criteria: QueryCriteria) -> set[SearchKey]:
        deactivated = set(self._config.connector.config[archive_id].search_criteria.deactivated)
        return deactivated & set(criteria.search_keys)

    # --- querying -------------------------------------------------------------------------------------------
    def _connector(self, archive_id: str) -> Connector:
        connector = self._connectors.get(archive_id)
        if connector is None:
            connector = self._connectors[archive_id] = self._factory(archive_id)
        return connector

    def _query_all(
        self, archive_ids: Sequence[str], criteria: QueryCriteria, context: QueryContext
    ) -> list[ArchiveOutcome]:
        if len(archive_ids) == 1:
            return [self._query_one(archive_ids[0], criteria, context)]
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(archive_ids), thread_name_prefix="archive")
        try:
            futures = {a: pool.submit(self._query_one, a, criteria, context) for a in archive_ids}
            remaining = max(0.0, context.deadline - time.monotonic())
            concurrent.futures.wait(futures.values(), timeout=remaining + 1.0)
            outcomes = []
            for archive_id, future in futures.items():
                if future.done():
                    outcomes.append(future.result())
                else:
                    future.cancel()
                    failure = ArchiveFailure(archive_id, "timeout", "the archive did not answer in time")
                    outcomes.append(ArchiveOutcome(archive_id, [], failure, self._settings.archive_deadline_seconds))
            return outcomes
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _query_one(self, archive_id: str, criteria: QueryCriteria, context: QueryContext) -> ArchiveOutcome:
        started = time.perf_counter()
        builder = StudyTreeBuilder()
        try:
            self._connector(archive_id).find(criteria, context, builder)
        except ArchiveError as exc:
            elapsed = time.perf_counter() - started
            logger.warning(
                "archive query failed",
                extra={"archive": archive_id, "kind": exc.kind, "reason": exc.detail, "seconds": round(elapsed, 3)},
            )
            return ArchiveOutcome(archive_id, [], ArchiveFailure(archive_id, exc.kind, exc.detail), elapsed)
        except Exception as exc:  # a connector bug must not hide the other archives' images
            elapsed = time.perf_counter() - started
            logger.exception("archive query crashed", extra={"archive": archive_id})
            failure = ArchiveFailure(archive_id, "bad-response", f"unexpected error ({type(exc).__name__})")
            return ArchiveOutcome(archive_id, [], failure, elapsed)
        studies = criteria.restrict(builder.studies())
        elapsed = time.perf_counter() - started
        logger.info(
            "archive answered",
            extra={
                "archive": archive_id,
                "studies": len(studies),
                "instances": sum(s.instance_count for s in studies),
                "seconds": round(elapsed, 3),
            },
        )
        return ArchiveOutcome(archive_id, studies, None, elapsed, dict(builder.skipped))

    # --- manifest -------------------------------------------------------------------------------------------
    def _archive_query(self, outcome: ArchiveOutcome, caller: Caller, warnings: list[str]) -> mf.ArchiveQuery:
        connector = self._config.connector.config[outcome.archive_id]
        options = connector.manifest
        base_url, http_tags, login = self._wado_target(outcome.archive_id, caller)
        query = mf.ArchiveQuery(
            arc_id=outcome.archive_id,
            base_url=base_url,
            studies=outcome.studies,
            http_tags=[*options.http_tags.items(), *http_tags],
            web_login=login,
            wado_rs=options.mode == "WADO_RS",
            require_only_sop_instance_uid=options.require_only_sop_instance_uid,
            additionnal_parameters=options.additionnal_parameters,
            override_dicom_tags=options.override_dicom_tags,
            transfer_syntax_uid=options.transfer_syntax_uid,
            compression_rate=options.compression_rate,
        )
        if outcome.failure is not None:
            text = f"The archive {outcome.archive_id} could not be queried: {outcome.failure.detail}."
            query.add_message(mf.Message("Archive unavailable", text, "WARN"))
            warnings.append(text)
        elif not outcome.studies:
            query.add_message(
                mf.Message(NO_RESULT_TITLE, f"No images match the request in the archive {outcome.archive_id}.")
            )
        if outcome.skipped:
            reasons = ", ".join(f"{n} × {why}" for why, n in sorted(outcome.skipped.items()))
            text = f"Some records of the archive {outcome.archive_id} were left out: {reasons}."
            query.add_message(mf.Message("Incomplete answer", text, "WARN"))
            warnings.append(text)
        return query

    def _wado_target(self, archive_id: str, caller: Caller) -> tuple[str, list[tuple[str, str]], str | None]:
        """(baseUrl, httpTags, webLogin) from wado.authentication: force-basic, else the caller's token (oauth2),
        else basic, else the plain WADO URL. The caller's token goes only where an oauth2 url asks for it."""
        connector = self._config.connector.config[archive_id]
        wado: Wado | None = self._config.wado_for(archive_id)
        auth = wado.authentication if wado else None
        if auth is not None:
            if auth.basic is not None and (auth.force_basic or auth.oauth2 is None):
                login = None
                if auth.basic.login and auth.basic.password is not None:
                    login = mf.web_login(auth.basic.login, auth.basic.password.get_secret_value())
                return auth.basic.url, [], login
            if auth.oauth2 is not None:
                return auth.oauth2.url, [("Authorization", f"Bearer {caller.token}")], None
        if wado is not None and wado.url:
            return wado.url, [], None
        dicomweb = connector.dicom_web_connector
        assert dicomweb is not None  # AppConfig guarantees a URL for every other case
        return dicomweb.wado_rs_url or dicomweb.url, [], None

    def _token_warning(self, caller: Caller) -> str | None:
        """Weasis downloads with the injected token for minutes: say so when it dies before the manifest does."""
        margin = self._settings.token_expiry_margin_seconds
        if caller.expires_at >= self._expiry().timestamp() + margin:
            return None
        left = max(0, int(caller.expires_at - self._clock()))
        return f"The access token expires in {left} s, before the manifest does: Weasis may fail to load images."

    def _expiry(self) -> dt.datetime:
        now = dt.datetime.fromtimestamp(int(self._clock()), tz=dt.UTC)
        return now + dt.timedelta(seconds=self._settings.manifest_ttl_seconds)
