"""The audit trail: one FHIR R4 AuditEvent (IHE Basic Audit Log Patterns) per request that touches patient data or
is refused for authentication or authorization, sent to an Amazon EventBridge bus with PutEvents.

Catalogue (docs/security.md has one example of each):
- `query`: a launch (GET /weasis, /IHEInvokeImageDisplay) registers a search; BALP PatientQuery (Query without a
  named patient); DICOM 110112 Query.
- `manifest-issued`: a manifest listing images was stored (GET /manifests, the launch's builder, POST /manifests
  with a JSON list): disclosure to the viewer, BALP PrivacyDisclosure at the source; DICOM 110106 Export.
- `manifest-redeemed`: the short link redirected Weasis to the stored manifest; DICOM 110106 Export, `read`.
- `upload`: an uploaded Weasis manifest was stored; BALP PrivacyDisclosure at the recipient; DICOM 110107 Import.
- `refusal`: 401 (DICOM 110114 User Authentication, failed Login) or 403 (DICOM 110113 Security Alert, BALP
  AuthZ-Role); also a query whose archives all failed (`query` with outcome 8).

What an event holds: who (issuer, subject, client id from the token), from where (source IP, user agent), what
(patients as `ID^^^Issuer`, study UIDs, counts, the archives asked, the search parameters that select images),
when, the outcome and the request id. Never a token, a password, a patient name, a manifest id or a URL: the
manifest is named by a digest of its id (the same digest in `manifest-issued` and `manifest-redeemed`, so the two
can be joined), and only the search keys and filters enter the query (not `cdb`/`pro`/`arg`, which may hold URLs,
nor `containsInDescription`, free text that could hold a name).

The sink (EventBridge PutEvents, failing closed unless AUDIT_FAIL_OPEN) is audit_trail.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict

from weasis_link.study_tree import by_patient

if TYPE_CHECKING:
    from lxml import etree

    from weasis_link.manifest import ArchiveQuery

logger = logging.getLogger(__name__)


class Caller(Protocol):
    """What an event reads of an authenticated caller (auth.Caller; not imported: auth -> identity ->
    patient_context -> this module)."""

    @property
    def subject(self) -> str: ...

    @property
    def claims(self) -> Mapping[str, Any]: ...


SERVICE_NAME: Final = "weasis-link"
# PutEvents takes at most 256 KB per entry: a manifest of thousands of studies is summarised by its counts.
MAX_STUDY_ENTITIES: Final = 200
MAX_USER_AGENT: Final = 256
MAX_IDENTITY: Final = 256
# The search parameters an event records: the ones that select images (see the module docstring).
AUDITED_PARAMETERS: Final = (
    "patientID",
    "studyUID",
    "accessionNumber",
    "seriesUID",
    "objectUID",
    "archive",
    "modalitiesInStudy",
    "lowerDateTime",
    "upperDateTime",
    "mostRecentResults",
    "requestType",
)

# --- code systems ---------------------------------------------------------------------------------------------
DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL: Final = "http://hl7.org/fhir/restful-interaction"
LIFECYCLE: Final = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
OUTCOME_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"
RESOURCE_TYPES: Final = "http://hl7.org/fhir/resource-types"
BALP: Final = "https://profiles.ihe.net/ITI/BALP"
BALP_ENTITY_TYPE: Final = f"{BALP}/CodeSystem/BasicAuditEntityType"
BALP_AUTHZ: Final = f"{BALP}/CodeSystem/AuthZsubType"
PROFILE_QUERY: Final = f"{BALP}/StructureDefinition/IHE.BasicAudit.Query"
PROFILE_PATIENT_QUERY: Final = f"{BALP}/StructureDefinition/IHE.BasicAudit.PatientQuery"
PROFILE_DISCLOSURE_SOURCE: Final = f"{BALP}/StructureDefinition/IHE.BasicAudit.PrivacyDisclosure.Source"
PROFILE_DISCLOSURE_RECIPIENT: Final = f"{BALP}/StructureDefinition/IHE.BasicAudit.PrivacyDisclosure.Recipient"
DICOM_UID_SYSTEM: Final = "urn:dicom:uid"
MANIFEST_DIGEST_SYSTEM: Final = "urn:weasis-link:manifest-digest"
ARCHIVE_SYSTEM: Final = "urn:weasis-link:archive"
REQUEST_ID_SYSTEM: Final = "urn:weasis-link:request-id"

Outcome = Literal["0", "4", "8", "12"]  # success, minor failure, serious failure, major failure
EventKind = Literal["query", "manifest-issued", "manifest-redeemed", "upload", "refusal"]
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_NS: Final = "{http://www.weasis.org/xsd/2.5}"


def _clean(value: object, limit: int = MAX_IDENTITY) -> str:
    """A value from a request or a token, made safe to store: no control characters, bounded."""
    return _CONTROL.sub("", str(value))[:limit]


# --- who and from where ---------------------------------------------------------------------------------------
class AuditContext(BaseModel):
    """Who asked, from where, in which request. Built by the API from the request and the validated token; it
    travels to the builder inside the build request (it holds no token)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    route: str
    request_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    server_host: str | None = None
    issuer: str | None = None
    subject: str | None = None
    client_id: str | None = None
    query: list[tuple[str, str]] = []


def client_of(claims: Mapping[str, Any]) -> str | None:
    """The OAuth client the token was issued to: RFC 9068 client_id (Cognito, Auth0), azp (Keycloak, Entra v2),
    appid (Entra v1), cid (Okta)."""
    for name in ("client_id", "azp", "appid", "cid"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return _clean(value)
    return None


def audited_query(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, _clean(v, 1024)) for k, v in pairs if k in AUDITED_PARAMETERS]


def context_from_event(
    raw_event: Mapping[str, Any], caller: Caller | None, query: Iterable[tuple[str, str]] = ()
) -> AuditContext:
    """The API Gateway HTTP API (payload 2.0) request context: requestId, http.sourceIp/userAgent/method/path."""
    context = raw_event.get("requestContext") or {}
    http = context.get("http") or {}
    claims = caller.claims if caller is not None else {}
    return AuditContext(
        # API Gateway's routeKey ("GET /manifests/{id}"), never the path: a short link's path is a capability.
        route=_clean(str(raw_event.get("routeKey") or f"{http.get('method', '?')} $default")),
        request_id=_clean(context["requestId"]) if context.get("requestId") else None,
        source_ip=_clean(http["sourceIp"]) if http.get("sourceIp") else None,
        user_agent=_clean(http["userAgent"], MAX_USER_AGENT) if http.get("userAgent") else None,
        server_host=_clean(context["domainName"]) if context.get("domainName") else None,
        issuer=_clean(claims["iss"]) if isinstance(claims.get("iss"), str) else None,
        subject=_clean(caller.subject) if caller is not None else None,
        client_id=client_of(claims),
        query=audited_query(query),
    )


# --- what: read from the manifest itself ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ManifestSummary:
    """The patients (`ID^^^Issuer`), studies and counts a manifest discloses, and the archives it points to."""

    patients: list[str] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)
    archives: list[str] = field(default_factory=list)
    series: int = 0
    instances: int = 0


def patient_key_text(patient_id: str, issuer: str | None) -> str:
    return f"{patient_id}^^^{issuer}" if issuer else patient_id


def summarize_manifest(body: bytes) -> ManifestSummary:
    """Patients, studies, series and instances of a (gzipped) Weasis manifest. Reads IDs only: PatientName is never
    looked at. The document is parsed in C (no Python object per element) and the few patients, studies and
    archives read from it; series and instances are counted by XPath, in C: a 5,000-instance manifest in a quarter
    of the time an element-by-element parse takes."""
    from lxml import etree

    data = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    return summarize_document(etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True)))


def summarize_document(root: etree._Element) -> ManifestSummary:
    """`summarize_manifest` of a document already parsed (an upload, parsed once to be validated)."""
    patients: dict[str, None] = {}
    studies: dict[str, None] = {}
    archives: dict[str, None] = {}
    for element in root.iter(f"{_NS}arcQuery", f"{_NS}Patient", f"{_NS}Study"):  # document order, root included
        tag = element.tag
        if tag == f"{_NS}Patient":
            pid = element.get("PatientID")
            if pid is not None:
                patients[patient_key_text(pid, element.get("IssuerOfPatientID"))] = None
        elif tag == f"{_NS}Study":
            uid = element.get("StudyInstanceUID")
            if uid:
                studies[uid] = None
        else:
            arc = element.get("arcId")
            if arc:
                archives[arc] = None
    series = int(cast(float, root.xpath("count(//w:Series)", namespaces=_XPATH_NS)))
    instances = int(cast(float, root.xpath("count(//w:Instance)", namespaces=_XPATH_NS)))
    return ManifestSummary(list(patients), list(studies), list(archives), series, instances)


_XPATH_NS: Final = {"w": _NS[1:-1]}


def summarize_archives(archives: Iterable[ArchiveQuery]) -> ManifestSummary:
    """What `summarize_manifest` reads from the document manifest.py writes for these archive queries, in the same
    order, taken from the study trees the document is written from (a built manifest is not parsed again). Every
    study of every archive is read: each <Patient> the document holds is in `patients`."""
    patients: dict[str, None] = {}
    studies: dict[str, None] = {}
    archive_ids: dict[str, None] = {}
    series = instances = 0
    for archive in archives:
        if archive.arc_id:
            archive_ids[archive.arc_id] = None
        for patient, patient_studies in by_patient(archive.studies):
            patients[patient_key_text(patient.key.patient_id, patient.key.issuer)] = None
            for study in patient_studies:
                studies[study.study_instance_uid] = None
                series += len(study.series)
                instances += study.instance_count
    return ManifestSummary(list(patients), list(studies), list(archive_ids), series, instances)


def manifest_digest(manifest_id: str) -> str:
    """Names a manifest in the trail without being its capability: the id cannot be recovered from it."""
    return hashlib.sha256(f"weasis-link manifest {manifest_id}".encode()).hexdigest()[:32]


# --- FHIR building blocks -------------------------------------------------------------------------------------
def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _server_agent(ctx: AuditContext, dicom_role: str, role_display: str) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(DCM, dicom_role, role_display)]},
        "who": {"display": SERVICE_NAME},
        "requestor": False,
    }
    if ctx.server_host:
        agent["network"] = {"address": ctx.server_host, "type": "1"}  # a domain name (host[:port]), never a URL
    return agent


def _client_agent(ctx: AuditContext, dicom_role: str, role_display: str) -> dict[str, Any]:
    who: dict[str, Any] = {"display": "client application"}
    if ctx.client_id:
        who = {"identifier": {"value": ctx.client_id}}
        if ctx.issuer:
            who["identifier"]["system"] = ctx.issuer
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(DCM, dicom_role, role_display)]},
        "who": who,
        "requestor": False,
        "network": {"address": ctx.source_ip or "unknown", "type": "2"},  # an IP address
    }
    if ctx.user_agent:
        agent["name"] = ctx.user_agent
    return agent


def _user_agent(ctx: AuditContext) -> dict[str, Any] | None:
    if not ctx.subject:
        return None
    identifier: dict[str, str] = {"value": ctx.subject}
    if ctx.issuer:
        identifier["system"] = ctx.issuer
    return {
        "type": {"coding": [_coding(PARTICIPATION, "IRCP", "information recipient")]},
        "who": {"identifier": identifier},
        "requestor": True,
    }


# DICOM audit roles: who sent the data and who received it.
_SOURCE_ROLE: Final = ("110153", "Source Role ID")
_DESTINATION_ROLE: Final = ("110152", "Destination Role ID")


def _participants(ctx: AuditContext, source: Literal["caller", "service"], *, user: bool = True) -> list[Any]:
    """The two ends of the exchange (the caller's client application and this service), `source` sending the data
    to the other, and the user the token names (unless `user` is False: a short link is redeemed without one)."""
    if source == "caller":
        agents = [_client_agent(ctx, *_SOURCE_ROLE), _server_agent(ctx, *_DESTINATION_ROLE)]
    else:
        agents = [_server_agent(ctx, *_SOURCE_ROLE), _client_agent(ctx, *_DESTINATION_ROLE)]
    return [*agents, _user_agent(ctx)] if user else agents


def _transaction_entity(ctx: AuditContext) -> list[dict[str, Any]]:
    if not ctx.request_id:
        return []
    return [
        {
            "what": {"identifier": {"system": REQUEST_ID_SYSTEM, "value": ctx.request_id}},
            "type": _coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
        }
    ]


def _query_entity(ctx: AuditContext) -> dict[str, Any]:
    text = urlencode(ctx.query)
    return {
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "24", "Query"),
        "description": text or "(no search parameters)",
        "query": base64.b64encode(text.encode("utf-8")).decode("ascii"),
    }


def _patient_entities(patients: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {
            "what": {"type": "Patient", "identifier": {"value": _clean(p, 1024)}},
            "type": _coding(ENTITY_TYPE, "1", "Person"),
            "role": _coding(OBJECT_ROLE, "1", "Patient"),
        }
        for p in patients
    ]


def _study_entities(study_uids: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            "what": {"type": "ImagingStudy", "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{uid}"}},
            "type": _coding(RESOURCE_TYPES, "ImagingStudy", "ImagingStudy"),
            "role": _coding(OBJECT_ROLE, "3", "Report"),
        }
        for uid in study_uids[:MAX_STUDY_ENTITIES]
    ]


def _manifest_entity(
    manifest_id: str | None, summary: ManifestSummary | None, expires_at: dt.datetime | None = None
) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "20", "Job"),
        "description": "Weasis manifest",
    }
    if manifest_id is not None:
        entity["what"] = {"identifier": {"system": MANIFEST_DIGEST_SYSTEM, "value": manifest_digest(manifest_id)}}
    details: list[dict[str, str]] = []
    if summary is not None:
        details += [
            {"type": "patients", "valueString": str(len(summary.patients))},
            {"type": "studies", "valueString": str(len(summary.study_uids))},
            {"type": "series", "valueString": str(summary.series)},
            {"type": "instances", "valueString": str(summary.instances)},
            {"type": "archives", "valueString": ",".join(summary.archives)},
        ]
        if len(summary.study_uids) > MAX_STUDY_ENTITIES:
            details.append(
                {"type": "studies-not-listed", "valueString": str(len(summary.study_uids) - MAX_STUDY_ENTITIES)}
            )
    if expires_at is not None:
        details.append({"type": "expires", "valueString": expires_at.isoformat().replace("+00:00", "Z")})
    if details:
        entity["detail"] = details
    return entity


def _archives_entity(archive_ids: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            "what": {"identifier": {"system": ARCHIVE_SYSTEM, "value": a}},
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "13", "Security Resource"),
            "description": "archive asked",
        }
        for a in archive_ids
    ]


def _event(
    kind: EventKind,
    ctx: AuditContext,
    *,
    profile: str | None,
    type_: dict[str, str],
    subtypes: list[dict[str, str]],
    action: str,
    outcome: Outcome,
    outcome_desc: str | None,
    agents: list[dict[str, Any] | None],
    entities: list[dict[str, Any]],
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": type_,
        "subtype": subtypes,
        "action": action,
        "recorded": _now(),
        "outcome": outcome,
        "agent": [a for a in agents if a is not None],
        "source": {
            "site": SERVICE_NAME,
            "observer": {"display": SERVICE_NAME},
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": entities,
        # Which entry of the catalogue, and the route, for filtering rules on the bus.
        "meta": {"tag": [_coding("urn:weasis-link:audit-event", kind)]},
        "extension": [{"url": "urn:weasis-link:route", "valueString": ctx.route}],
    }
    if profile:
        event["meta"]["profile"] = [profile]
    if outcome_desc:
        event["outcomeDesc"] = _clean(outcome_desc, 1024)
    return event


# --- the catalogue --------------------------------------------------------------------------------------------
def query_event(
    ctx: AuditContext,
    archive_ids: Sequence[str],
    patients: Sequence[str] = (),
    *,
    outcome: Outcome = "0",
    outcome_desc: str | None = None,
) -> dict[str, Any]:
    """A search was made (or registered for the builder) for these patients, in these archives."""
    return _event(
        "query",
        ctx,
        profile=(PROFILE_PATIENT_QUERY if patients else PROFILE_QUERY) if outcome == "0" else None,
        type_=_coding(EVENT_TYPE, "rest", "Restful Operation"),
        subtypes=[_coding(RESTFUL, "search", "search"), _coding(DCM, "110112", "Query")],
        action="E",
        outcome=outcome,
        outcome_desc=outcome_desc,
        agents=_participants(ctx, "caller"),
        entities=[
            *_transaction_entity(ctx),
            _query_entity(ctx),
            *_patient_entities(patients),
            *_archives_entity(archive_ids),
        ],
    )


@dataclass(frozen=True, slots=True)
class _ManifestEventKind:
    """What sets apart the events about a stored manifest (all successful disclosures of its patients' images)."""

    kind: EventKind
    profile: str  # when the manifest names patients
    type_: dict[str, str]
    restful: str
    action: str
    source: Literal["caller", "service"]
    user: bool


# PrivacyDisclosure at the source: this service (the recorder) is the source, the caller the recipient.
_ISSUED: Final = _ManifestEventKind(
    "manifest-issued", PROFILE_DISCLOSURE_SOURCE, _coding(DCM, "110106", "Export"), "search", "R", "service", True
)
_REDEEMED: Final = _ManifestEventKind(
    "manifest-redeemed", PROFILE_DISCLOSURE_SOURCE, _coding(DCM, "110106", "Export"), "read", "R", "service", False
)
# At the recipient: the uploader is the source, this service (the recorder) the recipient.
_UPLOADED: Final = _ManifestEventKind(
    "upload", PROFILE_DISCLOSURE_RECIPIENT, _coding(DCM, "110107", "Import"), "create", "C", "caller", True
)


def _manifest_event(
    spec: _ManifestEventKind,
    ctx: AuditContext,
    manifest_id: str,
    summary: ManifestSummary,
    expires_at: dt.datetime | None = None,
    *,
    with_query: bool = False,
) -> dict[str, Any]:
    """An event about a stored manifest: the transaction, the patients, the manifest, the studies (and the query
    that selected them, when there was one)."""
    entities = [
        *_transaction_entity(ctx),
        *_patient_entities(summary.patients),
        _manifest_entity(manifest_id, summary, expires_at),
        *_study_entities(summary.study_uids),
    ]
    return _event(
        spec.kind,
        ctx,
        profile=spec.profile if summary.patients else None,
        type_=dict(spec.type_),  # each event its own dicts: a sink may annotate one
        subtypes=[_coding(LIFECYCLE, "disclose", "Disclose Record Lifecycle Event"), _coding(RESTFUL, spec.restful)],
        action=spec.action,
        outcome="0",
        outcome_desc=None,
        agents=_participants(ctx, spec.source, user=spec.user),
        entities=[*entities, _query_entity(ctx)] if with_query else entities,
    )


def disclosure_event(
    ctx: AuditContext, manifest_id: str, summary: ManifestSummary, expires_at: dt.datetime | None = None
) -> dict[str, Any]:
    """A manifest listing these patients' images was stored for the caller (disclosure to the viewer)."""
    return _manifest_event(_ISSUED, ctx, manifest_id, summary, expires_at, with_query=True)


def redemption_event(ctx: AuditContext, manifest_id: str, summary: ManifestSummary) -> dict[str, Any]:
    """The short link sent Weasis (no token: the link is the capability) to the stored manifest."""
    return _manifest_event(_REDEEMED, ctx, manifest_id, summary)


def upload_event(
    ctx: AuditContext, manifest_id: str, summary: ManifestSummary, expires_at: dt.datetime | None = None
) -> dict[str, Any]:
    """A manifest was uploaded and stored: patient data received from the caller."""
    return _manifest_event(_UPLOADED, ctx, manifest_id, summary, expires_at)


def refusal_event(ctx: AuditContext, status: int, code: str, patients: Sequence[str] = ()) -> dict[str, Any]:
    """A request refused: 401 (authentication) or 403 (authorization)."""
    if status == 401:
        type_ = _coding(DCM, "110114", "User Authentication")
        subtypes = [_coding(DCM, "110122", "Login")]
    else:
        type_ = _coding(DCM, "110113", "Security Alert")
        subtypes = [_coding(BALP_AUTHZ, "AuthZ-Role", "Authorization Decision using only Roles")]
    return _event(
        "refusal",
        ctx,
        profile=None,
        type_=type_,
        subtypes=subtypes,
        action="E",
        outcome="4",
        outcome_desc=f"{status} {code}",
        agents=_participants(ctx, "caller"),
        entities=[*_transaction_entity(ctx), _query_entity(ctx), *_patient_entities(patients)],
    )
