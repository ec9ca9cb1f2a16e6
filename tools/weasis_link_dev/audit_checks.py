"""Checks the tests apply to every audit event: a valid FHIR R4 AuditEvent (the `fhir.resources` models; R4B's
AuditEvent is R4's), the elements IHE BALP requires for its kind, and nothing that must never be recorded."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

DCM = "http://dicom.nema.org/resources/ontology/DCM"


def validate_fhir(event: Mapping[str, Any]) -> None:
    """Raises (pydantic ValidationError) unless the event is a valid FHIR R4 AuditEvent."""
    from fhir.resources.R4B.auditevent import AuditEvent

    AuditEvent.model_validate(dict(event))


def kind(event: Mapping[str, Any]) -> str:
    return str(event["meta"]["tag"][0]["code"])


def _agent(event: Mapping[str, Any], system: str, code: str) -> list[Mapping[str, Any]]:
    return [a for a in event["agent"] if any(c["system"] == system and c["code"] == code for c in a["type"]["coding"])]


def _entities(event: Mapping[str, Any], role: str) -> list[Mapping[str, Any]]:
    return [e for e in event.get("entity", []) if e.get("role", {}).get("code") == role]


def balp_problems(event: Mapping[str, Any]) -> list[str]:
    """What the event lacks of BALP's required elements (empty: conformant for its kind)."""
    problems: list[str] = []
    for name in ("type", "action", "recorded", "outcome", "agent", "source"):
        if name not in event:
            problems.append(f"no {name}")
    if not event.get("source", {}).get("observer"):
        problems.append("no source.observer")
    source, destination = _agent(event, DCM, "110153"), _agent(event, DCM, "110152")
    if len(source) != 1 or len(destination) != 1:
        problems.append("needs exactly one Source Role ID and one Destination Role ID agent")
    for agent in source + destination:
        if not agent.get("who") or not agent.get("network", {}).get("address"):
            problems.append("a source/destination agent lacks who or network")
    ids = [e for e in event.get("entity", []) if e.get("type", {}).get("code") == "XrequestId"]
    if len(ids) != 1 or not ids[0]["what"]["identifier"]["value"]:
        problems.append("no request id entity")
    patients = _entities(event, "1")
    for p in patients:
        if p["type"]["code"] != "1" or not p["what"]["identifier"]["value"]:
            problems.append("a patient entity is not a Person with an identifier")
    profile = (event.get("meta", {}).get("profile") or [""])[0]
    if profile.endswith(("PatientQuery", "PrivacyDisclosure.Source", "PrivacyDisclosure.Recipient")) and not patients:
        problems.append(f"{profile} needs a patient entity")
    k = kind(event)
    subtypes = {(c["system"], c["code"]) for c in event.get("subtype", [])}
    if k == "query":
        if event["type"]["code"] != "rest" or event["action"] != "E":
            problems.append("a query is a rest event with action E")
        queries = _entities(event, "24")
        if len(queries) != 1 or "query" not in queries[0]:
            problems.append("a query needs one query entity with its query")
        if ("http://hl7.org/fhir/restful-interaction", "search") not in subtypes:
            problems.append("a query's subtype is search")
    elif k in ("manifest-issued", "manifest-redeemed", "upload"):
        expected = {"manifest-issued": ("110106", "R"), "manifest-redeemed": ("110106", "R"), "upload": ("110107", "C")}
        if (event["type"]["code"], event["action"]) != expected[k]:
            problems.append(f"{k} has type/action {expected[k]}")
        if ("http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle", "disclose") not in subtypes:
            problems.append("a disclosure's subtype includes iso-21089 disclose")
        if len(event.get("entity", [])) < 2:
            problems.append("a disclosure has a patient and the data disclosed")
    elif k == "refusal":
        if event["outcome"] == "0" or not event.get("outcomeDesc"):
            problems.append("a refusal has a failure outcome and says why")
        if event["type"]["code"] not in ("110114", "110113"):
            problems.append("a refusal is a User Authentication or Security Alert event")
    else:
        problems.append(f"unknown kind {k}")
    return problems


def forbidden_content(event: Mapping[str, Any], secrets: Iterable[str]) -> list[str]:
    """Which of the given strings (tokens, names, manifest ids, URLs...) appear anywhere in the event."""
    text = json.dumps(event, ensure_ascii=False)
    return [s for s in secrets if s and s in text]


# --- the e2e suite's check: every request served against the events it produced ---------------------------------
# What never appears in an event, whatever the test: a signed token (JWT), a manifest id (storage.MANIFEST_ID), a
# DICOM person name (`Family^Given`; a patient key `ID^^^Issuer` has no letter on both sides of one caret), a URL.
_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.")
_MANIFEST_ID: Final = re.compile(r"(?<![A-Za-z0-9_-])\d{10}-[A-Za-z0-9_-]{32}(?![A-Za-z0-9_-])")
_PERSON_NAME: Final = re.compile(r"[A-Za-z]\^[A-Za-z]")
_URI_KEYS: Final = frozenset({"system", "profile"})  # code systems and BALP profiles are URIs by definition
PATIENT_ROUTES: Final = frozenset({"GET /manifests", "POST /manifests", "GET /manifests/{id}"})
LAUNCH_ROUTES: Final = frozenset({"GET /weasis", "GET /IHEInvokeImageDisplay"})
PROBLEM: Final = "urn:weasis-link:problem:"
AUTHENTICATION_PROBLEMS: Final = frozenset({"unauthorized", "token-expires-too-soon"})  # errors.AuthenticationError
# http/audit_requests.AUTHORIZATION_REFUSALS
AUTHORIZATION_PROBLEMS: Final = frozenset(
    {"insufficient-scope", "archive-forbidden", "patient-not-in-context", "patient-context-required"}
)
BUILD_EVENTS: Final = ("manifest-issued", "query")  # a build's manifest, or its failed search (outcome 8)


@dataclass(frozen=True)
class Served:
    """One request the local stack served (its `{"servedRequest": …}` line)."""

    request_id: str
    method: str
    route_key: str
    status: int
    problem: str | None

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Served:
        return cls(record["requestId"], record["method"], record["routeKey"], record["status"], record.get("problem"))


def refusal_code(served: Served) -> str | None:
    """The DICOM event type of the refusal a request records: 110114 User Authentication (the token), 110113
    Security Alert (scopes, archives, patient context); None when the answer is no refusal."""
    problem = (served.problem or "").removeprefix(PROBLEM)
    if problem in AUTHENTICATION_PROBLEMS or (served.status == 401 and not problem):
        return "110114"
    if problem in AUTHORIZATION_PROBLEMS or (served.status == 403 and not problem):
        return "110113"
    return None


def expected_kinds(served: Served) -> tuple[list[str], tuple[str, ...]]:
    """(the kinds of the events the request records, in any order; the kinds of which at most one more may come:
    a launched build's event, later, under the launch's request id, or the search a launch answered after the
    archives recorded before its answer failed). docs/security.md's "Which requests record what" states the same
    rule."""
    problem = (served.problem or "").removeprefix(PROBLEM)
    launch = served.route_key in LAUNCH_ROUTES
    if problem == "audit-unavailable":
        return [], ()  # the bus refused: nothing reached it
    if refusal_code(served) is not None:
        return ["refusal"], (("query",) if launch else ())
    if launch:
        if served.status in (200, 302):
            return ["query"], BUILD_EVENTS
        if problem == "archives-failed":
            return ["query", "query"], ()  # its search, then the search's failure (outcome 8)
        if problem == "storage-unavailable":
            # the search was recorded; a launch that stored its manifest itself recorded it while the write failed
            return ["query"], ("manifest-issued",)
        return [], ("query",)  # answered after the archives (409, 404, 400...): its search may be recorded
    if served.route_key not in PATIENT_ROUTES:
        return [], ()  # health, OpenAPI, launch page, CORS preflight, unknown paths: no patient data
    if served.route_key == "GET /manifests/{id}":
        return (["manifest-redeemed"] if served.status == 302 else []), ()
    disclosure = "manifest-issued" if served.method == "GET" else "disclosure"
    if served.status in (200, 201):
        return [disclosure], ()
    if problem == "archives-failed":
        return ["query"], ()  # every archive failed: a search that disclosed nothing
    if problem == "storage-unavailable":
        return [disclosure], ()  # recorded while the write failed: the trail over-records, never under
    return [], ()  # input errors, nothing found: no patient data left the service


def _matches(kind_: str, event: Mapping[str, Any]) -> bool:
    found = kind(event)
    if kind_ == "disclosure":
        return found in ("manifest-issued", "upload")
    return found == kind_


def leaks(event: Mapping[str, Any]) -> list[str]:
    """What the event holds that no event may: a token, a manifest id, a person name, a URL."""
    found: list[str] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            if _JWT.search(value):
                found.append(f"{key}: a token")
            if _MANIFEST_ID.search(value):
                found.append(f"{key}: a manifest id")
            if _PERSON_NAME.search(value):
                found.append(f"{key}: a person name")
            if "://" in value and key not in _URI_KEYS:
                found.append(f"{key}: a URL")

    walk(event, "")
    return found


def request_id_of(event: Mapping[str, Any]) -> str | None:
    for e in event.get("entity", []):
        if e.get("type", {}).get("code") == "XrequestId":
            return str(e["what"]["identifier"]["value"])
    return None


def audit_mismatches(served: Sequence[Served], events: Sequence[Mapping[str, Any]]) -> list[str]:
    """What is wrong between the requests a stack served and the events its bus delivered meanwhile: each event valid
    (FHIR R4, BALP) and free of tokens, names, manifest ids and URLs; each request with exactly its events; no event
    of a request the stack did not serve (a launch's build records under the launch's request id)."""
    problems: list[str] = []
    by_request: dict[str | None, list[Mapping[str, Any]]] = {}
    for event in events:
        try:
            validate_fhir(event)
        except Exception as exc:
            problems.append(f"{kind(event)} is not a valid FHIR R4 AuditEvent: {exc}")
        problems += [f"{kind(event)}: {p}" for p in balp_problems(event)]
        problems += [f"{kind(event)} holds {p}" for p in leaks(event)]
        by_request.setdefault(request_id_of(event), []).append(event)
    for request in served:
        required, optional = expected_kinds(request)
        got = by_request.pop(request.request_id, [])
        remaining = list(got)
        for wanted in required:
            match = next((e for e in remaining if _matches(wanted, e)), None)
            if match is None:
                break
            remaining.remove(match)
            code = refusal_code(request)
            if wanted == "refusal" and match["type"]["code"] != code:
                problems.append(f"{request.method} {request.route_key} {request.status}: refusal type {code}")
        else:
            if len(remaining) == 1 and kind(remaining[0]) in optional:
                remaining = []
            if not remaining:
                continue
        what = f"{request.method} {request.route_key} -> {request.status} {request.problem or ''}".strip()
        more = f" + one of {list(optional)}" if optional else ""
        problems.append(f"{what}: expected {required}{more}, got {[kind(e) for e in got]}")
    for request_id, orphans in by_request.items():
        problems.append(f"events of no request served here ({request_id}): {[kind(e) for e in orphans]}")
    return problems
