"""Uploaded manifests: POST /manifests with a Weasis XML manifest, or a JSON list of UIDs to resolve.

XML (`application/xml`, `text/xml`; gzipped with `Content-Encoding: gzip` or as `application/gzip`; the media
types, the gunzip and the UPLOAD_MAX_BYTES bound (413) are read by weasis_link.http.requests.read_upload):
- well-formed, without a DOCTYPE (no entity tricks) -> else 400; valid against the Weasis manifest 2.5 XSD shipped
  in this package (schemas/, the reference file of weasis-facts §1) -> else 422 with the schema's errors;
- stored exactly as uploaded: fetched and gunzipped, it is byte-for-byte the uploaded document.

Token injection and uploads. A built manifest carries the caller's token where the connector's
`wado.authentication.oauth2` says; an uploaded one is served back byte-equal, so by default nothing is injected and
the uploader includes the httpTags it needs. With `injectToken=true` the caller's token is injected the same way as
in a built manifest, but only into an arcQuery whose `arcId` names a configured archive *and* whose `baseUrl` is
that archive's oauth2 WADO URL (a token is never sent to a host the uploader chose); the document is then
re-serialised (no longer byte-equal), and an arcQuery that already has an Authorization httpTag is refused (422).

JSON (`application/json`): `["<studyUID>", ...]` (study UIDs), or an object with the query parameter names as keys
(`{"studyUID": [...], "seriesUID": [...], "objectUID": [...], "patientID": "...", "archive": "pacs", ...}`),
resolved through the connectors like GET /manifests, with the caller's token injected.
"""

from __future__ import annotations

import functools
import gzip
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from lxml import etree

from weasis_link import json_body
from weasis_link import manifest as mf
from weasis_link.audit import summarize_document
from weasis_link.auth import Caller
from weasis_link.criteria import FILTER_PARAMETERS, KEY_PARAMETERS, criteria_from_pairs
from weasis_link.errors import FieldProblem, InvalidManifest, InvalidRequest
from weasis_link.launch_uri import LaunchOptions
from weasis_link.service import BeforeStore, ManifestResult, ManifestService

XSD_PATH: Final = Path(__file__).parent / "schemas" / "weasis-manifest-2.5.xsd"
JSON_KEYS: Final = frozenset({*KEY_PARAMETERS, *FILTER_PARAMETERS, "archive"})
MAX_SCHEMA_ERRORS: Final = 20
_NS: Final = f"{{{mf.NAMESPACE}}}"


@functools.cache
def manifest_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


@dataclass(frozen=True, slots=True)
class ValidatedManifest:
    tree: etree._ElementTree
    counts: tuple[int, int, int, int]


def validate_manifest(xml: bytes) -> ValidatedManifest:
    """Parse (no network, no DTD, no entities) and validate against the Weasis manifest XSD."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        tree = etree.parse(io.BytesIO(xml), parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidRequest(f"The upload is not well-formed XML: {exc.msg}") from None
    if getattr(tree.docinfo, "doctype", ""):  # (lxml-stubs lacks DocInfo.doctype)
        raise InvalidRequest("A manifest must not have a DOCTYPE.")
    schema = manifest_schema()
    if not schema.validate(tree):
        errors: list[Any] = list(cast(Iterable[Any], schema.error_log))  # (lxml-stubs: _ErrorLog is opaque)
        problems = [FieldProblem(f"line {e.line}", e.message) for e in errors[:MAX_SCHEMA_ERRORS]]
        first = problems[0].message if problems else "unknown error"
        raise InvalidManifest(
            f"The manifest is not valid against the Weasis manifest schema 2.5 ({len(errors)} error(s)); "
            f"first: {first}",
            problems,
        )
    return ValidatedManifest(tree, _count(tree))


def _count(tree: etree._ElementTree) -> tuple[int, int, int, int]:
    root = tree.getroot()
    patients, studies, series, instances = (
        sum(1 for _ in root.iter(f"{_NS}{name}")) for name in ("Patient", "Study", "Series", "Instance")
    )
    return patients, studies, series, instances


def uid_list_pairs(text: bytes) -> list[tuple[str, str]]:
    """The query parameters a JSON upload stands for."""
    data = json_body.loads(text)  # bounded depth, no duplicate keys
    if isinstance(data, list):
        data = {"studyUID": data}
    if not isinstance(data, dict):
        raise InvalidRequest("Upload a JSON array of study UIDs or an object of query parameters.")
    problems: list[FieldProblem] = []
    pairs: list[tuple[str, str]] = []
    for name, value in data.items():
        if name not in JSON_KEYS:
            problems.append(FieldProblem(name, f"is not one of {', '.join(sorted(JSON_KEYS))}"))
            continue
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
                pairs.append((name, str(v)))
            else:
                problems.append(FieldProblem(f"{name}[{i}]", "must be a string"))
    if problems:
        raise InvalidRequest("The JSON upload is not valid.", problems)
    return pairs


class ManifestUploads:
    def __init__(self, service: ManifestService) -> None:
        self._service = service

    def upload(
        self,
        media_type: Literal["xml", "json"],
        content: bytes,
        caller: Caller,
        launch: LaunchOptions | None,
        base_url: str,
        *,
        inject_token: bool = False,
        before_store: BeforeStore | None = None,
    ) -> ManifestResult:
        """Store an uploaded document (`content`: the XML manifest, gunzipped, or the JSON text)."""
        if media_type == "json":
            criteria = criteria_from_pairs(self._service.confine_query(uid_list_pairs(content), caller))
            return self._service.create_manifest(criteria, caller, launch, base_url=base_url, before_store=before_store)
        validated = validate_manifest(content)
        xml = content
        warnings: list[str] = []
        if inject_token:
            xml, warnings = self._inject(validated.tree, caller)
        body_gzip = gzip.compress(xml, compresslevel=mf.GZIP_LEVEL, mtime=0)
        return self._service.store_manifest(
            body_gzip,
            validated.counts,
            launch,
            base_url=base_url,
            warnings=warnings,
            summary=summarize_document(validated.tree.getroot()),  # the tree injection changed only in httpTags
            caller=caller,
            before_store=before_store,
        )

    def _inject(self, tree: etree._ElementTree, caller: Caller) -> tuple[bytes, list[str]]:
        warnings: list[str] = []
        injected: list[str] = []
        for arc in tree.getroot().iterfind(f"{_NS}arcQuery"):
            arc_id, base_url = arc.get("arcId", ""), arc.get("baseUrl", "")
            target = self._service.access.token_target(arc_id, caller)
            if target is None or target.base_url != base_url:
                warnings.append(
                    f"The token was not injected into the arcQuery {arc_id}: its baseUrl is not the WADO URL "
                    "configured for a token on that archive."
                )
                continue
            if any(tag.get("key", "").lower() == "authorization" for tag in arc.iterfind(f"{_NS}httpTag")):
                raise InvalidManifest(
                    f"The arcQuery {arc_id} already has an Authorization httpTag; remove it or leave injectToken off."
                )
            for position, (key, value) in enumerate(target.http_tags):
                arc.insert(position, etree.Element(f"{_NS}httpTag", {"key": key, "value": value}))
            injected.append(arc_id)
        if injected:
            token_warning = self._service.access.token_warning(caller, injected)
            if token_warning:
                warnings.append(token_warning)
        xml = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
        validate_manifest(xml)  # what we changed must still be valid
        return xml, warnings
