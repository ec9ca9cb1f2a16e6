"""What Weasis does with a launch URI and a manifest, reimplemented for tests (weasis-facts §1.4, §2.1).

- `parse_launch_uri`: URL-decode the whole URI once, split on `$`, pick the `-w` URL of `$dicom:get`.
- `fetch_manifest`: GET without credentials, follow at most 3 redirects, then gunzip by the old rule (Weasis
  <= 4.7.1: by the extension of the URL it was given) or the new one (>= 4.7.2: by the gzip magic bytes).
- `read_manifest`: the manifest's content as plain data for set comparisons.
- `validate`: against the upstream XSDs in ../shared/reference.
"""

from __future__ import annotations

import gzip
import shlex
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Final, Literal

from lxml import etree

from weasis_link_dev.dev_keys import REPO_ROOT

NS: Final = {"w": "http://www.weasis.org/xsd/2.5"}
SHARED_REFERENCE: Final = REPO_ROOT.parent / "shared" / "reference"
XSD_REFERENCE: Final = SHARED_REFERENCE / "weasis-manifest-2.5.xsd"
XSD_472: Final = SHARED_REFERENCE / "weasis-manifest-2.5-v4.7.2.xsd"
GzipRule = Literal["extension", "magic"]


@cache
def schema(path: Path = XSD_REFERENCE) -> etree.XMLSchema:
    # The v4.7.2 file starts with two spaces before <?xml, which lxml refuses (reference README).
    return etree.XMLSchema(etree.fromstring(path.read_bytes().lstrip()))


def validate(xml: bytes, path: Path = XSD_REFERENCE) -> list[str]:
    """The schema errors of a manifest (empty when valid)."""
    s = schema(path)
    doc = etree.fromstring(xml)
    if s.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in s.error_log.filter_from_errors()]  # type: ignore[attr-defined]


def parse_launch_uri(uri: str) -> dict[str, list[list[str]]]:
    """Commands of a weasis:// URI as the launcher sees them: {"dicom:get": [["-w", url]], …}."""
    decoded = urllib.parse.unquote_plus(uri)
    pieces = decoded.split("$")
    if not pieces[0].startswith("weasis"):
        raise ValueError("not a weasis URI")
    commands: dict[str, list[list[str]]] = {}
    for piece in pieces[1:]:
        words = shlex.split(piece.strip())
        if words:
            commands.setdefault(words[0], []).append(words[1:])
    return commands


def manifest_url_of(uri: str) -> str:
    args = parse_launch_uri(uri)["dicom:get"][0]
    return args[args.index("-w") + 1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass
class FetchedManifest:
    url: str
    final_url: str
    redirects: int
    raw: bytes
    xml: bytes
    content_type: str | None


def fetch_manifest(url: str, rule: GzipRule = "magic", max_redirects: int = 3, timeout: float = 60) -> FetchedManifest:
    """GET the manifest like Weasis: no credentials, up to 3 redirects, gunzip by the given rule."""
    opener = urllib.request.build_opener(_NoRedirect)
    current, redirects = url, 0
    while True:
        request = urllib.request.Request(current, headers={"Accept": "application/xml"})
        try:
            with opener.open(request, timeout=timeout) as response:
                raw = response.read()
                content_type = response.headers.get("Content-Type")
                break
        except urllib.error.HTTPError as exc:
            if exc.code in (301, 302, 303, 307, 308) and redirects < max_redirects:
                location = exc.headers["Location"]
                exc.close()
                current = urllib.parse.urljoin(current, location)
                redirects += 1
                continue
            raise
    if rule == "extension":
        path = urllib.parse.urlsplit(url).path  # the URL Weasis was given, not the redirect target
        if path.endswith(".gz"):
            xml = gzip.decompress(raw)
        elif path.endswith(".xml"):
            xml = raw
        else:
            xml = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    else:
        xml = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return FetchedManifest(url, current, redirects, raw, xml, content_type)


@dataclass(frozen=True)
class ManifestInstance:
    arc_id: str
    patient_id: str
    issuer: str | None
    patient_name: str
    study_uid: str
    series_uid: str
    sop_uid: str


@dataclass
class ArchiveView:
    arc_id: str
    base_url: str
    attributes: dict[str, str]
    http_tags: dict[str, str]
    message: dict[str, str] | None
    instances: list[ManifestInstance] = field(default_factory=list)
    patients: list[dict[str, str]] = field(default_factory=list)
    studies: list[dict[str, str]] = field(default_factory=list)
    series: list[dict[str, str]] = field(default_factory=list)
    instance_attributes: list[dict[str, str]] = field(default_factory=list)


def read_manifest(xml: bytes) -> list[ArchiveView]:
    root = etree.fromstring(xml)
    archives = []
    for arc in root.iterfind("w:arcQuery", NS):
        a = _attrs(arc)
        message = arc.find("w:Message", NS)
        view = ArchiveView(
            arc_id=a["arcId"],
            base_url=a["baseUrl"],
            attributes=a,
            http_tags={str(t.get("key", "")): str(t.get("value", "")) for t in arc.iterfind("w:httpTag", NS)},
            message=_attrs(message) if message is not None else None,
        )
        for patient in arc.iterfind("w:Patient", NS):
            view.patients.append(_attrs(patient))
            for study in patient.iterfind("w:Study", NS):
                view.studies.append(_attrs(study))
                for series in study.iterfind("w:Series", NS):
                    view.series.append(_attrs(series))
                    for inst in series.iterfind("w:Instance", NS):
                        view.instance_attributes.append(_attrs(inst))
                        view.instances.append(
                            ManifestInstance(
                                arc_id=view.arc_id,
                                patient_id=patient.get("PatientID", ""),
                                issuer=patient.get("IssuerOfPatientID"),
                                patient_name=patient.get("PatientName", ""),
                                study_uid=study.get("StudyInstanceUID", ""),
                                series_uid=series.get("SeriesInstanceUID", ""),
                                sop_uid=inst.get("SOPInstanceUID", ""),
                            )
                        )
        archives.append(view)
    return archives


def _attrs(element: etree._Element) -> dict[str, str]:
    return {str(k): str(v) for k, v in element.attrib.items()}


def wado_uri_url(archive: ArchiveView, inst: ManifestInstance, series: dict[str, str] | None = None) -> str:
    """The instance URL as Weasis builds it for WADO-URI (weasis-facts §1.4)."""
    only_sop = archive.attributes.get("requireOnlySOPInstanceUID") == "true"
    study = "" if only_sop else inst.study_uid
    series_uid = "" if only_sop else inst.series_uid
    url = (
        f"{archive.base_url}?requestType=WADO&studyUID={study}&seriesUID={series_uid}"
        f"&objectUID={inst.sop_uid}&contentType=application%2Fdicom"
    )
    ts = (series or {}).get("WadoTransferSyntaxUID")
    if ts:
        url += f"&transferSyntax={ts}"
        rate = (series or {}).get("WadoCompressionRate")
        if rate and int(rate) > 0:
            url += f"&imageQuality={rate}"
    return url + archive.attributes.get("additionnalParameters", "")


# What Weasis >= 4.7 sends to fetch an instance of a queryMode="DICOM_WEB" arcQuery (weasis-facts §1.4).
WADO_RS_ACCEPT: Final = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def wado_rs_url(archive: ArchiveView, instance_attributes: dict[str, str]) -> str:
    """The instance URL as Weasis >= 4.7 builds it for a DICOM_WEB arcQuery: baseUrl + DirectDownloadFile +
    `additionalParameters` (the spelling 4.7 reads; it ignores the XSD's `additionnalParameters`)."""
    return (
        archive.base_url
        + instance_attributes["DirectDownloadFile"]
        + archive.attributes.get("additionalParameters", "")
    )


def request_headers(archive: ArchiveView) -> dict[str, str]:
    """The headers Weasis sends with every WADO request of an arcQuery: each httpTag, and webLogin as Basic."""
    headers = dict(archive.http_tags)
    login = archive.attributes.get("webLogin")
    if login:
        headers["Authorization"] = f"Basic {login}"
    return headers


def multipart_parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(content type, bytes) of each part of a multipart/related answer (a WADO-RS retrieve)."""
    import email.parser
    import email.policy

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        parts.append((part.get_content_type(), payload if isinstance(payload, bytes) else b""))
    return parts
