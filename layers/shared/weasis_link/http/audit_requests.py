"""The audit trail at the API's edge: turns an API Gateway request and its outcome into the events of audit.py.

The routes call one method each (a gate handed to the domain, which calls it right before it stores or
dispatches; or a record after the fact), so the route handlers stay thin and the catalogue stays in audit.py.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from weasis_link.audit import (
    AuditContext,
    ManifestSummary,
    context_from_event,
    patient_key_text,
    query_event,
    redemption_event,
    refusal_event,
    summarize_manifest,
)
from weasis_link.audit_trail import AuditTrail
from weasis_link.auth import Caller
from weasis_link.claims_access import require_scopes
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import (
    AllArchivesFailed,
    ArchiveForbidden,
    AuthenticationError,
    InsufficientScope,
    PatientContextRequired,
    PatientNotInContext,
    WeasisLinkError,
)
from weasis_link.http.requests import query_pairs_without_token
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore

logger = logging.getLogger(__name__)

AUTHORIZATION_REFUSALS = (InsufficientScope, ArchiveForbidden, PatientNotInContext, PatientContextRequired)


class RequestAudit:
    def __init__(self, trail: AuditTrail, store: ManifestStore) -> None:
        self.trail = trail
        self._store = store

    @staticmethod
    def context(raw_event: Mapping[str, Any], caller: Caller | None, pairs: Sequence[tuple[str, str]]) -> AuditContext:
        return context_from_event(raw_event, caller, query_pairs_without_token(list(pairs)))

    # --- per-route scopes (checked here so that a refusal is audited like any other) -------------------------
    @staticmethod
    def require_read_scopes(caller: Caller, settings: ServiceSettings) -> None:
        require_scopes(caller.scopes, settings.oauth_read_scopes, "Reading images")

    @staticmethod
    def require_upload_scopes(caller: Caller, settings: ServiceSettings) -> None:
        require_scopes(caller.scopes, settings.oauth_upload_scopes, "Uploading a manifest")

    # --- gates ---------------------------------------------------------------------------------------------
    def disclosure_gate(
        self, raw_event: Mapping[str, Any], caller: Caller, pairs: Sequence[tuple[str, str]]
    ) -> Callable[[str, ManifestSummary, dt.datetime], None]:
        return self.trail.disclosure_gate(self.context(raw_event, caller, pairs))

    def upload_gate(
        self, raw_event: Mapping[str, Any], caller: Caller, content_type: str | None
    ) -> Callable[[str, ManifestSummary, dt.datetime], None]:
        # A JSON upload is a search resolved through the archives (a disclosure); XML is a manifest received.
        json_upload = (content_type or "").split(";", 1)[0].strip().lower() == "application/json"
        return self.trail.disclosure_gate(
            self.context(raw_event, caller, []), "manifest-issued" if json_upload else "upload"
        )

    def launch_gate(
        self,
        raw_event: Mapping[str, Any],
        caller: Caller,
        query: Sequence[tuple[str, str]],
        criteria: QueryCriteria,
    ) -> tuple[AuditContext | None, Callable[[Sequence[str]], None] | None]:
        if not self.trail.enabled:
            return None, None
        ctx = self.context(raw_event, caller, query)
        patients = [patient_key_text(p.patient_id, p.issuer) for p in criteria.patients]
        return ctx, self.trail.query_gate(ctx, patients)

    # --- after the fact ------------------------------------------------------------------------------------
    def redeemed(self, raw_event: Mapping[str, Any], manifest_id: str) -> None:
        """The short link is about to send Weasis to the manifest: record which patients' images it lists."""
        if not self.trail.enabled:
            return
        summary = summarize_manifest(self._store.read(manifest_id))
        self.trail.record(redemption_event(self.context(raw_event, None, []), manifest_id, summary))

    def refused(
        self,
        raw_event: Mapping[str, Any],
        caller: Caller | None,
        pairs: Sequence[tuple[str, str]],
        error: WeasisLinkError,
        status: int,
    ) -> None:
        """401/403 refusals, and searches whose archives all failed; never raises (the answer is an error)."""
        if not self.trail.enabled:
            return
        if isinstance(error, AuthenticationError):
            # Usually no caller yet; a token refused as too short-lived for a manifest was valid: say whose it was.
            event = refusal_event(self.context(raw_event, caller, pairs), 401, error.code)
        elif isinstance(error, AUTHORIZATION_REFUSALS):
            event = refusal_event(self.context(raw_event, caller, pairs), 403, error.code)
        elif isinstance(error, AllArchivesFailed) and caller is not None:
            archives = [f.archive_id for f in error.failures]
            event = query_event(
                self.context(raw_event, caller, pairs), archives, outcome="8", outcome_desc=f"{status} {error.code}"
            )
        else:
            return
        self.trail.record_refusal(event)
