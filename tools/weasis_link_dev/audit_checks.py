"""Checks the tests apply to every audit event: a valid FHIR R4 AuditEvent (the `fhir.resources` models; R4B's
AuditEvent is R4's), the elements IHE BALP requires for its kind, and nothing that must never be recorded."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

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
