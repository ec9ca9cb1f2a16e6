"""The use case: criteria + caller -> archives queried concurrently -> manifest -> S3 -> URLs.

`ManifestService` builds, stores and fails manifests. `create_manifest` (GET /manifests, JSON uploads) asks
`archives/querying.py` to select and query the archives (each answer re-checked against the criteria), builds one
arcQuery per archive with the target and credentials `archives/access.py` decides, stores the gzipped manifest under
a fresh random key and presigns it; `store_manifest` stores an uploaded one; `failure_manifest` is the manifest that
only says why there are no images. When every archive fails nothing is stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from weasis_link import manifest as mf
from weasis_link.archives.access import TokenProviders, WadoAccess
from weasis_link.archives.duplicates import deduplicate, distinct_counts
from weasis_link.archives.patient_identity import AMBIGUOUS_TITLE, check_identities
from weasis_link.archives.querying import ArchiveOutcome, Archives, ConnectorFactory
from weasis_link.audit import ManifestSummary, summarize_archives
from weasis_link.auth import Caller
from weasis_link.capability import capped_expiry
from weasis_link.config import AppConfig
from weasis_link.connectors import QueryContext
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import AllArchivesFailed, ArchiveFailure
from weasis_link.launch_uri import LaunchOptions, bounded_weasis_uri, weasis_uri
from weasis_link.manifest_links import short_link
from weasis_link.oauth_client import shared_token_provider
from weasis_link.patient_context import caller_patient, check_manifest, confine_pairs, confine_studies
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, manifest_expiry, new_manifest_id, put_while
from weasis_link.study_tree import PatientKey

NO_RESULT_TITLE: Final = "No images found"
# Called with (manifest id, what the manifest lists, expiry) while a manifest is written (the audit trail).
BeforeStore = Callable[[str, ManifestSummary, dt.datetime], None]


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


@dataclass(frozen=True)
class BuiltManifest:
    """A manifest document before storage (also what the asynchronous builder produces)."""

    archive_queries: list[mf.ArchiveQuery]
    outcomes: list[ArchiveOutcome]
    warnings: list[str]
    summary: ManifestSummary  # what the document lists, read from the trees it is written from

    @functools.cached_property
    def body_gzip(self) -> bytes:  # written on first use: create_manifest writes it while the audit event is sent
        return mf.manifest_gzip(self.archive_queries, str(uuid.uuid4()))


class ManifestService:
    """Builds, stores and fails manifests. Its `archives` (selection, queries) and `access` (what each arcQuery
    carries for Weasis) are public: the launch and the uploads ask them too."""

    def __init__(
        self,
        settings: ServiceSettings,
        config: AppConfig,
        store: ManifestStore,
        connector_factory: ConnectorFactory | None = None,
        clock: Callable[[], float] = time.time,
        token_providers: TokenProviders = shared_token_provider,
    ) -> None:
        self._settings = settings
        self._config = config
        self._store = store
        self._clock = clock
        self._connector_factory = connector_factory
        self.archives = Archives(config, connector_factory)
        self.access = WadoAccess(settings, config, clock=clock, token_providers=token_providers)

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
        `before_store` (the audit trail) runs during the write; if it raises, nothing stays stored."""
        self.expiry(caller)  # a token too short-lived for any manifest is refused before the PACS is asked
        built = self.build(criteria, caller)
        return self.store_manifest(
            lambda: built.body_gzip,
            distinct_counts(q.studies for q in built.archive_queries),
            launch,
            base_url=base_url,
            archives=built.outcomes,
            warnings=built.warnings,
            caller=caller,
            before_store=before_store,
            summary=built.summary,
        )

    def store_manifest(
        self,
        body_gzip: bytes | Callable[[], bytes],  # or the function that writes it (put_while)
        counts: tuple[int, int, int, int],
        launch: LaunchOptions | None = None,
        *,
        base_url: str | None = None,
        archives: Sequence[ArchiveOutcome] = (),
        warnings: Sequence[str] = (),
        summary: ManifestSummary,
        caller: Caller | None = None,
        before_store: BeforeStore | None = None,
    ) -> ManifestResult:
        """Store a gzipped manifest (built or uploaded) and link it; `summary`, what it lists, is checked against the
        patient context and audited. With the `caller`, the manifest and its links expire no later than its token."""
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
        check_manifest(summary.patients, self.patient_in_context(caller) if caller is not None else None)
        record = None if before_store is None else functools.partial(before_store, manifest_id, summary, expires_at)
        put_while(self._store, manifest_id, body_gzip, expires_at, record)  # the audit event while it writes
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
        archive_ids = self.archives.select(criteria, caller)
        budget = deadline_seconds or self._settings.archive_deadline_seconds
        context = QueryContext(bearer_token=caller.token, deadline=time.monotonic() + budget)
        outcomes = self.archives.query(archive_ids, criteria, context)
        patient = self.patient_in_context(caller)
        if patient is not None:  # every connector's answer, confined to the token's patient
            confine_studies([o.studies for o in outcomes if o.failure is None], criteria, patient)
        failures = [o.failure for o in outcomes if o.failure is not None]
        if len(failures) == len(outcomes):
            raise AllArchivesFailed(failures)
        # One patient or a clear answer (409 before anything is stored), then each instance once across archives.
        answers = [(o.archive_id, o.studies) for o in outcomes if o.failure is None]
        identity_warnings = check_identities(criteria, answers, self._config)
        deduped = deduplicate(answers, self.archives.order())
        outcomes = [dataclasses.replace(o, studies=deduped.studies.get(o.archive_id, o.studies)) for o in outcomes]
        warnings = self.archives.deactivation_warnings(criteria) + identity_warnings + deduped.warnings
        queries = [self._archive_query(o, caller, warnings) for o in outcomes if o.archive_id not in deduped.emptied]
        for query in queries:
            if query.studies and identity_warnings:
                query.add_message(mf.Message(AMBIGUOUS_TITLE, identity_warnings[0], "WARN"))
        self.access.warn_short_lived_tokens(queries, caller, warnings)
        return BuiltManifest(queries, outcomes, warnings, summarize_archives(queries))

    def reconfigure(self, config: AppConfig) -> None:
        """Use a re-read configuration (secret_refresh.py): connectors are rebuilt on first use with its values."""
        self._config = config
        self.archives = Archives(config, self._connector_factory)
        self.access = dataclasses.replace(self.access, config=config)

    # --- patient context (patient_context.py) ---------------------------------------------------------------
    def patient_in_context(self, caller: Caller) -> PatientKey | None:
        auth = self._config.auth
        return caller_patient(caller.trusted_issuer, caller.claims, auth.issuers if auth is not None else ())

    def confine_query(self, pairs: Sequence[tuple[str, str]], caller: Caller) -> list[tuple[str, str]]:
        return confine_pairs(pairs, self.patient_in_context(caller))

    # --- manifest -------------------------------------------------------------------------------------------
    def _archive_query(self, outcome: ArchiveOutcome, caller: Caller, warnings: list[str]) -> mf.ArchiveQuery:
        options = self._config.connector.config[outcome.archive_id].manifest
        target = self.access.target(outcome.archive_id, caller)
        query = mf.ArchiveQuery(
            arc_id=outcome.archive_id,
            base_url=target.base_url,
            studies=outcome.studies,
            http_tags=[*options.http_tags.items(), *target.http_tags],
            web_login=target.web_login,
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
            text = f"No images match the request in the archive {outcome.archive_id}."
            query.add_message(mf.Message(NO_RESULT_TITLE, text))
        if outcome.skipped:
            reasons = ", ".join(f"{n} × {why}" for why, n in sorted(outcome.skipped.items()))
            text = f"Some records of the archive {outcome.archive_id} were left out: {reasons}."
            query.add_message(mf.Message("Incomplete answer", text, "WARN"))
            warnings.append(text)
        return query

    def failure_manifest(self, archive_ids: Sequence[str], title: str, description: str) -> bytes:
        """A gzipped manifest that only tells Weasis's user why there are no images (an ERROR <Message> per archive).
        No httpTag: a manifest without images needs no credentials."""
        message = mf.Message(title, description, "ERROR")
        queries = [
            mf.ArchiveQuery(arc_id=a, base_url=self.access.target(a, None).base_url, messages=[message])
            for a in archive_ids
        ]
        return mf.manifest_gzip(queries, str(uuid.uuid4()))

    def expiry(self, caller: Caller | None = None) -> dt.datetime:
        """When a manifest created now expires (whole seconds, UTC): MANIFEST_TTL_SECONDS from now, and never after
        the caller's token (a capability URL must not outlive the token that authorised it). A token with less than
        MANIFEST_MIN_TTL_SECONDS left is refused: Weasis could not even fetch the manifest."""
        expires_at = manifest_expiry(self._clock(), self._settings.manifest_ttl_seconds)
        if caller is None:
            return expires_at
        return capped_expiry(expires_at, caller.expires_at, self._clock(), self._settings.manifest_min_ttl_seconds)
