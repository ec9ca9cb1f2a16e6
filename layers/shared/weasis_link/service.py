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
from weasis_link.capability import capped_expiry
from weasis_link.claims_access import check_named_archives, permitted_archives
from weasis_link.config import AppConfig, OAuth2Wado, Wado
from weasis_link.connectors import Connector, QueryContext, create_connector
from weasis_link.criteria import KEY_PARAMETERS, QueryCriteria, SearchKey
from weasis_link.errors import (
    AllArchivesFailed,
    ArchiveError,
    ArchiveFailure,
    ArchiveForbidden,
    CriterionDeactivated,
    UnknownArchive,
)
from weasis_link.launch_uri import LaunchOptions, bounded_weasis_uri, weasis_uri
from weasis_link.oauth_client import shared_token_provider
from weasis_link.patient_context import check_manifest, confine_pairs, confine_studies, context_patient
from weasis_link.settings import ServiceSettings
from weasis_link.short_links import short_link
from weasis_link.storage import ManifestStore, new_manifest_id
from weasis_link.study_tree import PatientKey, Study, StudyTreeBuilder

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
    manifest_url: str  # presigned HTTPS URL of the gzipped manifest in S3
    weasis_url: str
    expires_at: dt.datetime
    patients: int
    studies: int
    series: int
    instances: int
    archives: list[ArchiveOutcome]
    warnings: list[str]
    # The short link <api>/manifests/{id} when the API's base URL is known, else the presigned URL.
    manifest_link: str = ""

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
# Called with (manifest id, gzipped body, expiry) right before a manifest is written (the audit trail).
BeforeStore = Callable[[str, bytes, dt.datetime], None]


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
        self,
        criteria: QueryCriteria,
        caller: Caller,
        launch: LaunchOptions | None = None,
        *,
        base_url: str | None = None,
        before_store: BeforeStore | None = None,
    ) -> ManifestResult:
        """Build, store and link a manifest. With the API's `base_url`, the links carry the short manifest link.
        `before_store` (the audit trail) is called right before the write; if it raises, nothing is stored."""
        self.expiry(caller)  # a token too short-lived for any manifest is refused before the PACS is asked
        built = self.build(criteria, caller)
        return self.store_manifest(
            built.body_gzip,
            mf.count(built.archive_queries),
            launch,
            base_url=base_url,
            archives=built.outcomes,
            warnings=built.warnings,
            caller=caller,
            before_store=before_store,
        )

    def store_manifest(
        self,
        body_gzip: bytes,
        counts: tuple[int, int, int, int],
        launch: LaunchOptions | None = None,
        *,
        base_url: str | None = None,
        archives: Sequence[ArchiveOutcome] = (),
        warnings: Sequence[str] = (),
        caller: Caller | None = None,
        before_store: BeforeStore | None = None,
    ) -> ManifestResult:
        """Store a gzipped manifest (built or uploaded) under a fresh id, and make its links. With the `caller`,
        the manifest, its short link and its presigned URL expire no later than the caller's token."""
        expires_at = self.expiry(caller)
        manifest_id = new_manifest_id(expires_at)
        # Presign and make the launch URI before the write, so that nothing after PutObject can fail and leave an
        # orphan behind (launch options too long for the URI are refused here).
        lifetime = max(1, int(expires_at.timestamp() - self._clock()))
        presigned = self._store.presigned_url(manifest_id, min(self._settings.presign_expires_seconds, lifetime))
        if base_url is None:
            link, launch_uri = presigned, weasis_uri(presigned, launch)
        else:
            link = short_link(base_url, manifest_id)
            launch_uri = bounded_weasis_uri(link, launch)
        if caller is not None:
            self.check_in_context(body_gzip, caller)
        if before_store is not None:
            before_store(manifest_id, body_gzip, expires_at)
        self._store.put(manifest_id, body_gzip, expires_at)
        patients, studies, series, instances = counts
        return ManifestResult(
            manifest_id=manifest_id,
            manifest_url=presigned,
            weasis_url=launch_uri,
            expires_at=expires_at,
            patients=patients,
            studies=studies,
            series=series,
            instances=instances,
            archives=list(archives),
            warnings=list(warnings),
            manifest_link=link,
        )

    def build(self, criteria: QueryCriteria, caller: Caller, deadline_seconds: float | None = None) -> BuiltManifest:
        """Query the archives and build the gzipped manifest (no storage), within `deadline_seconds` (default:
        ARCHIVE_DEADLINE_SECONDS, inside API Gateway's limit)."""
        archive_ids = self.select_archives(criteria, caller)
        budget = deadline_seconds or self._settings.archive_deadline_seconds
        context = QueryContext(bearer_token=caller.token, deadline=time.monotonic() + budget)
        outcomes = self._query_all(archive_ids, criteria, context)
        patient = self.patient_in_context(caller)
        if patient is not None:  # every connector's answer, confined to the token's patient
            confine_studies([o.studies for o in outcomes if o.failure is None], criteria, patient)
        failures = [o.failure for o in outcomes if o.failure is not None]
        if len(failures) == len(outcomes):
            raise AllArchivesFailed(failures)
        warnings = self.deactivation_warnings(criteria)
        queries = [self._archive_query(o, caller, warnings) for o in outcomes]
        self._warn_short_lived_tokens(queries, caller, warnings)
        body = mf.manifest_gzip(queries, str(uuid.uuid4()))
        return BuiltManifest(body, queries, outcomes, warnings)

    # --- patient context (patient_context.py) ---------------------------------------------------------------
    def patient_in_context(self, caller: Caller) -> PatientKey | None:
        """The patient the caller's token is confined to (its trusted issuer's patient-context rule), or None. The
        builder's caller has no trusted issuer attached: its issuer entry is found again by `iss`."""
        issuer = caller.trusted_issuer
        if issuer is None and self._config.auth is not None:
            iss = caller.claims.get("iss")
            issuer = next(
                (
                    e
                    for e in self._config.auth.issuers
                    if isinstance(iss, str) and (e.issuer == iss or e.tenant_in(iss))
                ),
                None,
            )
        return context_patient(issuer.patient_context if issuer is not None else None, caller.claims)

    def confine_query(self, pairs: Sequence[tuple[str, str]], caller: Caller) -> list[tuple[str, str]]:
        """The request's parameters confined to the caller's patient context (unchanged without one)."""
        return confine_pairs(pairs, self.patient_in_context(caller))

    def check_in_context(self, body_gzip: bytes, caller: Caller) -> None:
        """The last line: a manifest about to be stored lists the context patient only."""
        patient = self.patient_in_context(caller)
        if patient is not None:
            from weasis_link.audit import summarize_manifest

            check_manifest(summarize_manifest(body_gzip).patients, patient)

    # --- archive selection ----------------------------------------------------------------------------------
    def select_archives(self, criteria: QueryCriteria, caller: Caller | None = None) -> list[str]:
        """`archive=` ids (must exist, and the caller's claims must allow them) or the connector.default archives
        the caller may use; then drop archives that refuse a key used."""
        configured = self._config.connector.config
        rules = {cid: c.access for cid, c in configured.items()}
        claims = caller.claims if caller is not None else None
        if criteria.archives:
            unknown = [a for a in criteria.archives if a not in configured]
            if unknown:
                raise UnknownArchive(
                    f"Unknown archive: {', '.join(unknown)}. Configured archives: {', '.join(configured)}."
                )
            check_named_archives(criteria.archives, rules, claims)
            selected = list(criteria.archives)
        else:
            selected = permitted_archives(self._config.default_connector_ids, rules, claims)
            if not selected:
                raise ArchiveForbidden("Your token does not allow any of the archives of this service.")
        allowed = [a for a in selected if not self._refused_keys(a, criteria)]
        if not allowed:
            refused = sorted({k for a in selected for k in self._refused_keys(a, criteria)})
            names = ", ".join(PARAMETER_BY_KEY[k] for k in refused)
            raise CriterionDeactivated(f"Searching by {names} is deactivated for the selected archives.")
        return allowed

    def deactivation_warnings(self, criteria: QueryCriteria) -> list[str]:
        """Archives left out because they refuse a key the request uses (said in the JSON answer only: a Weasis
        dialog on every launch for a deliberate policy would be noise)."""
        selected = list(criteria.archives) or self._config.default_connector_ids
        warnings = []
        for archive_id in selected:
            refused = self._refused_keys(archive_id, criteria) if archive_id in self._config.connector.config else set()
            if refused:
                names = ", ".join(PARAMETER_BY_KEY[k] for k in sorted(refused))
                warnings.append(
                    f"The archive {archive_id} was not searched: searching by {names} is deactivated there."
                )
        return warnings

    def default_archive_ids(self) -> list[str]:
        return self._config.default_connector_ids

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

    def _wado_target(self, archive_id: str, caller: Caller | None) -> tuple[str, list[tuple[str, str]], str | None]:
        """(baseUrl, httpTags, webLogin). For a DICOM_WEB connector in WADO_RS mode the baseUrl is its DICOMweb root
        (`wado-rs-url`, else `url`): Weasis appends `/studies/…` to it, so a (global) wado block's WADO-URI
        endpoint would be wrong there; that block still decides the credentials."""
        base_url, http_tags, login = self._wado_auth_target(archive_id, caller)
        connector = self._config.connector.config[archive_id]
        dicomweb = connector.dicom_web_connector
        if connector.manifest.mode == "WADO_RS" and dicomweb is not None:
            base_url = dicomweb.wado_rs_url or dicomweb.url
        return base_url, http_tags, login

    def _wado_auth_target(
        self, archive_id: str, caller: Caller | None
    ) -> tuple[str, list[tuple[str, str]], str | None]:
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
                tags = (
                    [] if caller is None else [("Authorization", f"Bearer {self._injected_token(auth.oauth2, caller)}")]
                )
                return auth.oauth2.url, tags, None
        if wado is not None and wado.url:
            return wado.url, [], None
        dicomweb = connector.dicom_web_connector
        assert dicomweb is not None  # AppConfig guarantees a URL for every other case
        return dicomweb.wado_rs_url or dicomweb.url, [], None

    def token_target(self, archive_id: str, caller: Caller) -> tuple[str, list[tuple[str, str]]] | None:
        """(WADO baseUrl, httpTags) when the archive's configuration injects a token into its arcQuery; else None."""
        if archive_id not in self._config.connector.config:
            return None
        base_url, http_tags, _ = self._wado_target(archive_id, caller)
        if not any(key == "Authorization" for key, _ in http_tags):
            return None
        return base_url, http_tags

    # --- token lifetime -------------------------------------------------------------------------------------
    # Weasis downloads instance by instance with the injected token, for minutes, and never refreshes it
    # (weasis-facts takeaway 8): a token that dies before the manifest does is reported, and a connector may inject
    # a service token obtained by client credentials instead (wado.authentication.oauth2.service-token).
    def _token_lasts(self, expires_at: float) -> bool:
        return expires_at >= self.expiry().timestamp() + self._settings.token_expiry_margin_seconds

    def _short_token_text(self, whose: str, expires_at: float) -> str:
        left = max(0, int(expires_at - self._clock()))
        return f"The {whose} expires in {left} s, before the manifest does: Weasis may fail to load images."

    def _injected_token(self, oauth2: OAuth2Wado, caller: Caller) -> str:
        """The caller's token, or the connector's service token when configured to replace it (always, or when the
        caller's token does not last). A service token that cannot be obtained falls back to the caller's."""
        service_token = oauth2.service_token
        if service_token is None or (service_token.use != "always" and self._token_lasts(caller.expires_at)):
            return caller.token
        needed = self.expiry().timestamp() + self._settings.token_expiry_margin_seconds - self._clock()
        try:
            return shared_token_provider(service_token.client_credentials).token(min_validity_seconds=needed).value
        except ArchiveError as exc:
            logger.warning("service token unavailable; the caller's token is injected", extra={"reason": exc.detail})
            return caller.token

    def _injects_caller_token(self, archive_id: str, caller: Caller) -> bool:
        """Whether the archive's manifest would carry the caller's own token (decided from configuration only)."""
        wado = self._config.wado_for(archive_id)
        auth = wado.authentication if wado else None
        if auth is None or auth.oauth2 is None or (auth.basic is not None and auth.force_basic):
            return False
        service_token = auth.oauth2.service_token
        return service_token is None or (service_token.use != "always" and self._token_lasts(caller.expires_at))

    def token_warning(self, caller: Caller, archive_ids: Sequence[str] | None = None) -> str | None:
        """The warning for a caller whose token dies before the manifest, when an archive would inject it."""
        selected = self.default_archive_ids() if archive_ids is None else archive_ids
        if self._token_lasts(caller.expires_at) or not any(self._injects_caller_token(a, caller) for a in selected):
            return None
        return self._short_token_text("access token", caller.expires_at)

    def _warn_short_lived_tokens(self, queries: Sequence[mf.ArchiveQuery], caller: Caller, warnings: list[str]) -> None:
        """A WARN <Message> on each arcQuery whose injected token dies before the manifest; the text once in
        `warnings` (the JSON answer)."""
        for query in queries:
            value = next((v for k, v in query.http_tags if k == "Authorization"), None)
            if value is None:
                continue
            if value == f"Bearer {caller.token}":
                whose, title, expires_at = "access token", "Access token expires soon", float(caller.expires_at)
            else:
                service_expiry = self._service_token_expiry(query.arc_id)
                if service_expiry is None:
                    continue
                whose, title, expires_at = "service token", "Service token expires soon", service_expiry
            if self._token_lasts(expires_at):
                continue
            text = self._short_token_text(whose, expires_at)
            query.add_message(mf.Message(title, text, "WARN"))
            if text not in warnings:
                warnings.append(text)

    def _service_token_expiry(self, archive_id: str) -> float | None:
        wado = self._config.wado_for(archive_id)
        oauth2 = wado.authentication.oauth2 if wado and wado.authentication else None
        if oauth2 is None or oauth2.service_token is None:
            return None
        try:  # the provider's cached token: the one just injected
            return shared_token_provider(oauth2.service_token.client_credentials).token().expires_at
        except ArchiveError:
            return None

    def failure_manifest(self, archive_ids: Sequence[str], title: str, description: str) -> bytes:
        """A gzipped manifest that only tells Weasis's user why there are no images (an ERROR <Message> per archive).
        No httpTag: a manifest without images needs no credentials."""
        queries = []
        for archive_id in archive_ids:
            base_url, _, _ = self._wado_target(archive_id, None)
            query = mf.ArchiveQuery(arc_id=archive_id, base_url=base_url)
            query.add_message(mf.Message(title, description, "ERROR"))
            queries.append(query)
        return mf.manifest_gzip(queries, str(uuid.uuid4()))

    def expiry(self, caller: Caller | None = None) -> dt.datetime:
        """When a manifest created now expires (whole seconds, UTC): MANIFEST_TTL_SECONDS from now, and never after
        the caller's token (a capability URL must not outlive the token that authorised it). A token with less than
        MANIFEST_MIN_TTL_SECONDS left is refused: Weasis could not even fetch the manifest."""
        expires_at = self._expiry()
        if caller is None:
            return expires_at
        return capped_expiry(expires_at, caller.expires_at, self._clock(), self._settings.manifest_min_ttl_seconds)

    def _expiry(self) -> dt.datetime:
        now = dt.datetime.fromtimestamp(int(self._clock()), tz=dt.UTC)
        return now + dt.timedelta(seconds=self._settings.manifest_ttl_seconds)
