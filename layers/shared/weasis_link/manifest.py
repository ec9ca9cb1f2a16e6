"""The Weasis XML manifest, namespace http://www.weasis.org/xsd/2.5 (schema: schemas/weasis-manifest-2.5.xsd).

Streamed with lxml's incremental writer straight into gzip: a 100,000-instance manifest never exists as a tree in
memory. Values come normalised from the study tree (dicom_values), and lxml escapes them, so no PACS data can make
the document ill-formed or invalid. The one exception is the `<Instance>` elements, thousands per study and most of
the writing time: when every value they carry is made only of characters that XML writes as they are (UIDs,
numbers, the DICOMweb path), they are written as text, byte for byte what lxml would write (tests/unit/
test_manifest.py proves it for generated instances); any other value, and lxml writes them.

Choices (docs/configuration.md, "Manifest"):
- One `arcQuery` per archive (`arcId` = connector id). No `queryMode` for WADO-URI archives: absent means WADO-URI
  for every Weasis version; `queryMode="DICOM_WEB"` plus a `DirectDownloadFile` per instance for WADO-RS archives
  (Weasis >= 4.7.0).
- `additionnalParameters` is written with the XSD's spelling (read by Weasis <= 4.6.x; 4.7+ reads only
  `additionalParameters`, which the XSD refuses). For the common case, a transfer syntax, use the per-series
  `WadoTransferSyntaxUID`, which every version reads.
- At most one `<Message>` per arcQuery (the XSD's limit): the most severe, with the other notes appended.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Final, Literal

from lxml import etree

from weasis_link.study_tree import Instance, Patient, Study, by_patient, sorted_series

NAMESPACE: Final = "http://www.weasis.org/xsd/2.5"
XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
# zlib's fastest level: a 5,000-instance manifest (820 KB of XML) compresses in less than half level 6's time to a
# 6 % larger object (138 KB against 130 KB): less time in the request than the 8 KB cost Weasis to download.
GZIP_LEVEL: Final = 1
Severity = Literal["INFO", "WARN", "ERROR"]
_SEVERITY_RANK: Final = {"INFO": 0, "WARN": 1, "ERROR": 2}
# Characters an attribute value keeps unchanged in XML (no escaping, no whitespace normalisation): all a UID, an
# integer or a DICOMweb path is made of.
_VERBATIM: Final = re.compile(r"[0-9A-Za-z./-]*+")
_Stream = IO[bytes] | gzip.GzipFile


def _tag(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    description: str
    severity: Severity = "WARN"


@dataclass(slots=True)
class ArchiveQuery:
    """Everything one `arcQuery` needs: where Weasis fetches the images, how it authenticates, and the studies."""

    arc_id: str
    base_url: str
    studies: list[Study] = field(default_factory=list)
    http_tags: Sequence[tuple[str, str]] = ()
    web_login: str | None = None
    wado_rs: bool = False
    require_only_sop_instance_uid: bool = False
    additionnal_parameters: str | None = None
    override_dicom_tags: Sequence[str] = ()
    transfer_syntax_uid: str | None = None
    compression_rate: int | None = None
    messages: list[Message] = field(default_factory=list)

    def add_message(self, message: Message) -> None:
        self.messages.append(message)


def web_login(login: str, password: str) -> str:
    """webLogin is base64("login:password"); Weasis sends it as `Authorization: Basic <webLogin>`."""
    return base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


def merged_message(messages: Sequence[Message]) -> Message | None:
    if not messages:
        return None
    if len(messages) == 1:
        return messages[0]
    worst = max(messages, key=lambda m: _SEVERITY_RANK[m.severity])
    others = [f"{m.title}: {m.description}" for m in messages if m is not worst]
    return Message(worst.title, " ".join([worst.description, *others]), worst.severity)


def write_manifest(stream: _Stream, archives: Iterable[ArchiveQuery], manifest_uid: str) -> None:
    """Write the XML document to a binary stream."""
    with etree.xmlfile(stream, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(_tag("manifest"), {"uid": manifest_uid}, nsmap={None: NAMESPACE, "xsi": XSI}):
            for archive in archives:
                _write_archive(xf, stream, archive)


def manifest_xml(archives: Iterable[ArchiveQuery], manifest_uid: str) -> bytes:
    buffer = io.BytesIO()
    write_manifest(buffer, archives, manifest_uid)
    return buffer.getvalue()


def manifest_gzip(archives: Iterable[ArchiveQuery], manifest_uid: str) -> bytes:
    """The gzipped document (mtime 0: the same manifest always compresses to the same bytes)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
        write_manifest(gz, archives, manifest_uid)
    return buffer.getvalue()


def _write_archive(xf: etree._IncrementalFileWriter, stream: _Stream, archive: ArchiveQuery) -> None:
    attrs = {"arcId": archive.arc_id, "baseUrl": archive.base_url}
    if archive.web_login:
        attrs["webLogin"] = archive.web_login
    attrs["requireOnlySOPInstanceUID"] = "true" if archive.require_only_sop_instance_uid else "false"
    if archive.additionnal_parameters:
        attrs["additionnalParameters"] = archive.additionnal_parameters
    if archive.override_dicom_tags:
        attrs["overrideDicomTagsList"] = ",".join(archive.override_dicom_tags)
    if archive.wado_rs:
        attrs["queryMode"] = "DICOM_WEB"
    with xf.element(_tag("arcQuery"), attrs):
        # Order is the XSD's sequence: httpTag*, Message?, Patient*.
        for key, value in archive.http_tags:
            with xf.element(_tag("httpTag"), {"key": key, "value": value}):
                pass
        message = merged_message(archive.messages)
        if message is not None:
            with xf.element(
                _tag("Message"),
                {"title": message.title, "description": message.description, "severity": message.severity},
            ):
                pass
        for patient, studies in by_patient(archive.studies):
            _write_patient(xf, stream, archive, patient, studies)


def _write_patient(
    xf: etree._IncrementalFileWriter, stream: _Stream, archive: ArchiveQuery, patient: Patient, studies: list[Study]
) -> None:
    attrs = {"PatientID": patient.key.patient_id, "PatientName": patient.name or ""}
    _put(attrs, "IssuerOfPatientID", patient.key.issuer)
    _put(attrs, "PatientBirthDate", patient.birth_date)
    _put(attrs, "PatientBirthTime", patient.birth_time)
    _put(attrs, "PatientSex", patient.sex)
    with xf.element(_tag("Patient"), attrs):
        for study in studies:
            _write_study(xf, stream, archive, study)


def _write_study(xf: etree._IncrementalFileWriter, stream: _Stream, archive: ArchiveQuery, study: Study) -> None:
    attrs = {"StudyInstanceUID": study.study_instance_uid}
    _put(attrs, "StudyDescription", study.description)
    _put(attrs, "StudyDate", study.study_date)
    _put(attrs, "StudyTime", study.study_time)
    _put(attrs, "AccessionNumber", study.accession_number)
    _put(attrs, "StudyID", study.study_id)
    _put(attrs, "ReferringPhysicianName", study.referring_physician_name)
    with xf.element(_tag("Study"), attrs):
        for series in sorted_series(study):
            s_attrs = {"SeriesInstanceUID": series.series_instance_uid}
            _put(s_attrs, "SeriesDescription", series.description)
            if series.series_number is not None:
                s_attrs["SeriesNumber"] = str(series.series_number)
            _put(s_attrs, "Modality", series.modality)
            _put(s_attrs, "SeriesDate", series.series_date)
            _put(s_attrs, "SeriesTime", series.series_time)
            _put(s_attrs, "WadoTransferSyntaxUID", archive.transfer_syntax_uid)
            if archive.compression_rate:
                s_attrs["WadoCompressionRate"] = str(archive.compression_rate)
            with xf.element(_tag("Series"), s_attrs):
                prefix = f"/studies/{study.study_instance_uid}/series/{series.series_instance_uid}/instances/"
                download = prefix if archive.wado_rs else None
                markup = instances_markup(series.instances, download)
                if markup is None:
                    write_instances(xf, series.instances, download)
                else:
                    xf.flush()  # what lxml holds goes first: the Series start tag
                    stream.write(markup)


def instances_markup(instances: Sequence[Instance], download_prefix: str | None) -> bytes | None:
    """The `<Instance>` elements as lxml writes them (write_instances), made without it; None when a value has a
    character XML would not keep as it is."""
    values = [download_prefix or ""]
    values += [i.sop_instance_uid for i in instances]
    values += [i.sop_class_uid for i in instances if i.sop_class_uid]
    values += [str(i.instance_number) for i in instances if i.instance_number is not None]
    if not _VERBATIM.fullmatch("".join(values)):
        return None
    parts = []
    for inst in instances:
        uid = inst.sop_instance_uid
        element = f'<Instance SOPInstanceUID="{uid}"'
        if inst.sop_class_uid:
            element += f' SOPClassUID="{inst.sop_class_uid}"'
        if inst.instance_number is not None:
            element += f' InstanceNumber="{inst.instance_number}"'
        if download_prefix is not None:
            element += f' DirectDownloadFile="{download_prefix}{uid}"'
        parts.append(element + "></Instance>")
    return "".join(parts).encode("ascii")


def write_instances(
    xf: etree._IncrementalFileWriter, instances: Sequence[Instance], download_prefix: str | None
) -> None:
    """The `<Instance>` elements of a series, written by lxml."""
    tag = _tag("Instance")
    for inst in instances:
        attrs = {"SOPInstanceUID": inst.sop_instance_uid}
        if inst.sop_class_uid:
            attrs["SOPClassUID"] = inst.sop_class_uid
        if inst.instance_number is not None:
            attrs["InstanceNumber"] = str(inst.instance_number)
        if download_prefix is not None:
            attrs["DirectDownloadFile"] = download_prefix + inst.sop_instance_uid
        with xf.element(tag, attrs):
            pass


def _put(attrs: dict[str, str], name: str, value: str | None) -> None:
    if value:
        attrs[name] = value


def count(archives: Iterable[ArchiveQuery]) -> tuple[int, int, int, int]:
    """(patients, studies, series, instances) across archives; a patient in two archives counts twice."""
    patients = studies = series = instances = 0
    for a in archives:
        patients += len({s.patient.key for s in a.studies})
        studies += len(a.studies)
        for s in a.studies:
            series += len(s.series)
            instances += s.instance_count
    return patients, studies, series, instances
