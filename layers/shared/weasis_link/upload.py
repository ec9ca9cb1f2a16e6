"""Uploaded manifests: POST /manifests with a Weasis XML manifest, or a JSON list of UIDs to resolve.

XML (`application/xml`, `text/xml`; gzipped with `Content-Encoding: gzip` or as `application/gzip`):
- at most UPLOAD_MAX_BYTES of XML (after gunzip, read with that bound, so a gzip bomb stops there) -> else 413;
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
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from lxml import etree

from weasis_link import manifest as mf
from weasis_link.auth import Caller
from weasis_link.criteria import FILTER_PARAMETERS, KEY_PARAMETERS, criteria_from_pairs
from weasis_link.errors import FieldProblem, InvalidManifest, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from weasis_link.launch_uri import LaunchOptions
from weasis_link.service import BeforeStore, ManifestResult, ManifestService

XSD_PATH: Final = Path(__file__).parent / "schemas" / "weasis-manifest-2.5.xsd"
XML_MEDIA_TYPES: Final = frozenset({"application/xml", "text/xml"})
GZIP_MEDIA_TYPES: Final = frozenset({"application/gzip", "application/x-gzip"})
JSON_MEDIA_TYPE: Final = "application/json"
JSON_KEYS: Final = frozenset({*KEY_PARAMETERS, *FILTER_PARAMETERS, "archive"})
MAX_SCHEMA_ERRORS: Final = 20
_NS: Final = f"{{{mf.NAMESPACE}}}"


@functools.cache
def manifest_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


@dataclass(frozen=True, slots=True)
class UploadedDocument:
    media_type: str  # "xml" | "json"
    content: bytes  # the XML document (gunzipped) or the JSON text


def read_upload(
    body: bytes, content_type: str | None, content_encoding: str | None, max_bytes: int
) -> UploadedDocument:
    """What was uploaded, by media type; the size limit applies to the document itself (after gunzip)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding} is not supported (use gzip or none).")
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"The upload is larger than {max_bytes} bytes.")
    if encoding == "gzip" or media_type in GZIP_MEDIA_TYPES:
        body = _gunzip(body, max_bytes)
        if media_type in GZIP_MEDIA_TYPES:
            media_type = "application/xml"
    if media_type in XML_MEDIA_TYPES:
        return UploadedDocument("xml", body)
    if media_type == JSON_MEDIA_TYPE:
        return UploadedDocument("json", body)
    raise UnsupportedMediaType(
        "Upload a Weasis manifest as application/xml (optionally gzipped) or a list of UIDs as application/json."
    )


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as gz:
            data = gz.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error):
        raise InvalidRequest("The upload is not valid gzip.") from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The uploaded manifest is larger than {max_bytes} bytes once decompressed.")
    return data


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
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The upload is not valid JSON.") from None
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
    def __init__(self, service: ManifestService, max_bytes: int) -> None:
        self._service = service
        self.max_bytes = max_bytes

    def upload(
        self,
        body: bytes,
        content_type: str | None,
        content_encoding: str | None,
        caller: Caller,
        launch: LaunchOptions | None,
        base_url: str,
        *,
        inject_token: bool = False,
        before_store: BeforeStore | None = None,
    ) -> ManifestResult:
        document = read_upload(body, content_type, content_encoding, self.max_bytes)
        if document.media_type == "json":
            criteria = criteria_from_pairs(self._service.confine_query(uid_list_pairs(document.content), caller))
            return self._service.create_manifest(criteria, caller, launch, base_url=base_url, before_store=before_store)
        validated = validate_manifest(document.content)
        xml = document.content
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
            caller=caller,
            before_store=before_store,
        )

    def _inject(self, tree: etree._ElementTree, caller: Caller) -> tuple[bytes, list[str]]:
        warnings: list[str] = []
        injected: list[str] = []
        for arc in tree.getroot().iterfind(f"{_NS}arcQuery"):
            arc_id, base_url = arc.get("arcId", ""), arc.get("baseUrl", "")
            target = self._service.token_target(arc_id, caller)
            if target is None or target[0] != base_url:
                warnings.append(
                    f"The token was not injected into the arcQuery {arc_id}: its baseUrl is not the WADO URL "
                    "configured for a token on that archive."
                )
                continue
            if any(tag.get("key", "").lower() == "authorization" for tag in arc.iterfind(f"{_NS}httpTag")):
                raise InvalidManifest(
                    f"The arcQuery {arc_id} already has an Authorization httpTag; remove it or leave injectToken off."
                )
            for position, (key, value) in enumerate(target[1]):
                arc.insert(position, etree.Element(f"{_NS}httpTag", {"key": key, "value": value}))
            injected.append(arc_id)
        if injected:
            token_warning = self._service.token_warning(caller, injected)
            if token_warning:
                warnings.append(token_warning)
        xml = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
        validate_manifest(xml)  # what we changed must still be valid
        return xml, warnings
