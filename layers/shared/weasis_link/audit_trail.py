"""The audit trail's sink: FHIR AuditEvents (built by audit.py) sent to an Amazon EventBridge bus with PutEvents.

`AuditTrail.record` raises AuditUnavailable (503) when the bus refuses, and its callers record before anything is
stored, or while a manifest is written (storage.put_while, which then deletes it), so a refused event
leaves nothing behind; AUDIT_FAIL_OPEN=true logs the failure and lets the request through
instead. Refusals never turn into a 503 (`record_refusal`). Cold start: nothing here imports boto3 at import time;
the EventBridge client is created once, on a thread started at Init (`prepare`), and reused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from weasis_link.audit import (
    AuditContext,
    ManifestSummary,
    disclosure_event,
    query_event,
    upload_event,
)
from weasis_link.errors import AuditUnavailable, WeasisLinkError, error_code

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

logger = logging.getLogger(__name__)

EVENT_SOURCE: Final = "weasis-link.audit"
DETAIL_TYPE: Final = "FHIR AuditEvent"


class AuditSink(Protocol):
    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Deliver every event or raise."""
        ...


class EventBridgeSink:
    """PutEvents to one bus. The client is created once: on a thread of its own started at Init (`prepare`), so that
    its cost overlaps the first request's waits instead of adding to them, or at the first event if that comes
    first; then reused."""

    def __init__(self, bus: str, region: str, endpoint_url: str | None = None) -> None:
        self.bus = bus
        self._region = region
        self._endpoint_url = endpoint_url
        self._client: EventBridgeClient | None = None
        self._lock = threading.Lock()

    def _events(self) -> EventBridgeClient:
        with self._lock:
            if self._client is None:
                from botocore.config import Config

                from weasis_link.storage import aws_session

                # Short: the request waits for this, and a slow bus must fail within API Gateway's 29 s.
                config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
                # The functions' session: what S3's client loaded is shared, and its EventBridge model is PutEvents'.
                self._client = aws_session().client(
                    "events", region_name=self._region, endpoint_url=self._endpoint_url, config=config
                )
            return self._client

    def prepare(self) -> None:
        """Creates the client on a daemon thread. Call it once the function's own clients exist: boto3's default
        session is not thread-safe while clients are being created from it (the first event waits on the lock)."""
        threading.Thread(target=self._events, name="audit-client", daemon=True).start()

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        entries: Any = [
            {
                "Source": EVENT_SOURCE,
                "DetailType": DETAIL_TYPE,
                "Detail": json.dumps(e, separators=(",", ":"), ensure_ascii=False),
                "EventBusName": self.bus,
            }
            for e in events
        ]
        answer = self._events().put_events(Entries=entries)
        if answer.get("FailedEntryCount"):
            codes = sorted({str(e.get("ErrorCode")) for e in answer.get("Entries", []) if e.get("ErrorCode")})
            raise RuntimeError(f"PutEvents refused {answer['FailedEntryCount']} entries ({', '.join(codes)})")


class AuditTrail:
    """Records audit events; fails closed (AuditUnavailable) unless fail_open. No sink: auditing is off."""

    def __init__(self, sink: AuditSink | None, *, fail_open: bool = False) -> None:
        self.sink = sink
        self.fail_open = fail_open

    @property
    def enabled(self) -> bool:
        return self.sink is not None

    def prepare(self) -> None:
        """At Init: the sink's client made ahead of the first event (EventBridgeSink.prepare)."""
        prepare = getattr(self.sink, "prepare", None)
        if prepare is not None:
            prepare()

    def record(self, *events: Mapping[str, Any]) -> None:
        if self.sink is None or not events:
            return
        try:
            self.sink.send(events)
        except Exception as exc:
            # The class only: a botocore message may echo the request, which holds patient identifiers.
            reason = error_code(exc) if not isinstance(exc, RuntimeError) else str(exc)
            if self.fail_open:
                logger.error("audit event not recorded (AUDIT_FAIL_OPEN)", extra={"reason": reason})
                return
            logger.error("audit event not recorded: request refused", extra={"reason": reason})
            raise AuditUnavailable("The access could not be recorded in the audit trail; try again later.") from None

    def record_refusal(self, event: Mapping[str, Any]) -> None:
        """A refusal is answered as such even when the trail is down (it disclosed nothing)."""
        with contextlib.suppress(WeasisLinkError):
            self.record(event)

    # --- gates: what the domain calls right before it stores or dispatches ---------------------------------
    def disclosure_gate(
        self, ctx: AuditContext, kind: Literal["manifest-issued", "upload"] = "manifest-issued"
    ) -> Callable[[str, ManifestSummary, dt.datetime], None]:
        """A callback for ManifestService.store_manifest: records the manifest about to be stored (what it lists,
        `summary`, comes with it: the document is not read again)."""
        build = disclosure_event if kind == "manifest-issued" else upload_event

        def gate(manifest_id: str, summary: ManifestSummary, expires_at: dt.datetime) -> None:
            if self.enabled:
                self.record(build(ctx, manifest_id, summary, expires_at))

        return gate

    def query_gate(self, ctx: AuditContext, patients: Sequence[str] = ()) -> Callable[[Sequence[str]], None]:
        """A callback for Launcher.launch: records the search before the build is registered."""

        def gate(archive_ids: Sequence[str]) -> None:
            self.record(query_event(ctx, archive_ids, patients))

        return gate


def audit_trail(bus: str | None, region: str, endpoint_url: str | None, *, fail_open: bool) -> AuditTrail:
    if not bus:
        logger.warning("AUDIT_EVENT_BUS is not set: no audit trail is written")
        return AuditTrail(None)
    return AuditTrail(EventBridgeSink(bus, region, endpoint_url), fail_open=fail_open)
