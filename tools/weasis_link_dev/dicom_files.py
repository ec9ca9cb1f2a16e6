"""DICOM Part-10 files for synthetic ``InstanceRecord``s (pydicom 3, no numpy), cached by dataset fingerprint.

Every attribute of a record is written (Type 2 attributes are written empty when the record has ``None``, Type 3
ones are omitted), in UTF-8 (``ISO_IR 192``). Image SOP classes get an 8x8 16-bit MONOCHROME2 frame (~1.3 kB per
file). Files land in ``<cache>/dicom/<fingerprint>/<SOPInstanceUID>.dcm``; a second run with the same records reuses
them and generates nothing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from weasis_link_dev.dataset import InstanceRecord
from weasis_link_dev.synthetic_studies import NON_IMAGE_SOP_CLASSES, make_uid

# Bump when the bytes written for a record change: it is part of every fingerprint, so old caches are ignored.
WRITER_VERSION = "1"
CACHE_ENV = "WEASIS_LINK_CACHE"

_CROSS_SECTIONAL = frozenset({"CT", "MR", "PT", "NM"})
_PROJECTION = frozenset({"CR", "DX", "MG", "XA"})


def repo_root() -> Path | None:
    """The weasis-link checkout this module lives in, or None when imported from an installed copy."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "pyproject.toml"
        if candidate.is_file() and 'name = "weasis-link"' in candidate.read_text(encoding="utf-8"):
            return parent
    return None


def cache_root() -> Path:
    """``$WEASIS_LINK_CACHE``, else ``<repo>/.cache`` (gitignored), else ``./.cache``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    root = repo_root()
    return (root if root is not None else Path.cwd()) / ".cache"


def dataset_fingerprint(records: Iterable[InstanceRecord]) -> str:
    """A stable digest of the records as a set (order-independent) and of the file writer version."""
    rows = sorted(dataclasses.astuple(record) for record in records)
    payload = json.dumps([WRITER_VERSION, rows], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def _set(ds: Dataset, keyword: str, value: object, *, type2: bool) -> None:
    """Type 2 attributes are present but empty when unknown (as modalities send them); Type 3 ones are absent."""
    if value is not None:
        setattr(ds, keyword, value)
    elif type2:
        setattr(ds, keyword, "")


def _pixels(seed: int) -> bytes:
    # A gradient offset by the instance number: frames differ, and the viewer shows something recognisable.
    return struct.pack("<64H", *(((index * 61) + seed * 7) % 4096 for index in range(64)))


def build_dataset(record: InstanceRecord) -> Dataset:
    """The full DICOM data set (with file meta) for one record."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(record.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(record.sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "WEASISLINK_1"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = record.sop_class_uid
    ds.SOPInstanceUID = record.sop_instance_uid
    # Patient
    ds.PatientName = record.patient_name
    ds.PatientID = record.patient_id
    _set(ds, "IssuerOfPatientID", record.issuer_of_patient_id, type2=False)
    _set(ds, "PatientBirthDate", record.patient_birth_date, type2=True)
    _set(ds, "PatientSex", record.patient_sex, type2=True)
    # Study
    ds.StudyInstanceUID = record.study_instance_uid
    _set(ds, "StudyDate", record.study_date, type2=True)
    _set(ds, "StudyTime", record.study_time, type2=True)
    _set(ds, "AccessionNumber", record.accession_number, type2=True)
    _set(ds, "StudyID", record.study_id, type2=True)
    _set(ds, "StudyDescription", record.study_description, type2=False)
    _set(ds, "ReferringPhysicianName", record.referring_physician_name, type2=True)
    # Series
    ds.SeriesInstanceUID = record.series_instance_uid
    ds.Modality = record.modality
    _set(ds, "SeriesNumber", record.series_number, type2=True)
    _set(ds, "SeriesDescription", record.series_description, type2=False)
    _set(ds, "SeriesDate", record.series_date, type2=False)
    _set(ds, "SeriesTime", record.series_time, type2=False)
    ds.Manufacturer = "weasis-link synthetic"
    # Instance
    _set(ds, "InstanceNumber", record.instance_number, type2=True)
    _set(ds, "ContentDate", record.series_date or record.study_date, type2=True)
    _set(ds, "ContentTime", record.series_time or record.study_time, type2=True)

    if record.sop_class_uid in NON_IMAGE_SOP_CLASSES:
        _add_document_content(ds, record)
    else:
        _add_image(ds, record)
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _add_document_content(ds: Dataset, record: InstanceRecord) -> None:
    """A minimal SR / KO document tree, so viewers that open it find a root container."""
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    if record.modality == "KO":
        ds.ConceptNameCodeSequence = DicomSequence([_code("113000", "DCM", "Of Interest")])
        ds.ContentSequence = DicomSequence()
        return
    ds.ConceptNameCodeSequence = DicomSequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = DicomSequence([_code("121071", "DCM", "Finding")])
    text.TextValue = f"Synthetic report for {record.study_description or 'study'}."
    ds.ContentSequence = DicomSequence([text])


def _add_image(ds: Dataset, record: InstanceRecord) -> None:
    number = record.instance_number or 0
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if record.modality in _CROSS_SECTIONAL else ["ORIGINAL", "PRIMARY"]
    if record.sop_class_uid.endswith(".7"):
        ds.ConversionType = "WSD"  # Secondary Capture: Type 1
    if record.modality in _CROSS_SECTIONAL:
        # Geometry lets a viewer sort slices and build MPRs; slice position follows InstanceNumber.
        ds.FrameOfReferenceUID = make_uid("frame-of-reference", record.study_instance_uid)
        ds.ImagePositionPatient = [0.0, 0.0, -5.0 * number]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 5.0
    elif record.modality in _PROJECTION:
        ds.PatientOrientation = ""
    if record.modality == "CT":
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = _pixels(number)


def write_instance(record: InstanceRecord, path: Path) -> None:
    build_dataset(record).save_as(path, enforce_file_format=True)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so concurrent test runs build a cache entry once instead of racing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dicom_file_name(record: InstanceRecord) -> str:
    return f"{record.sop_instance_uid}.dcm"


def ensure_dicom_files(records: Sequence[InstanceRecord], *, cache_dir: Path | None = None) -> list[Path]:
    """Paths of the Part-10 files for ``records`` (same order), generating them only when not cached yet."""
    directory = (cache_dir or cache_root()) / "dicom" / dataset_fingerprint(records)
    if not (directory / ".complete").exists():
        with file_lock(directory.with_suffix(".lock")):
            if not (directory / ".complete").exists():
                _generate(records, directory)
    return [directory / dicom_file_name(record) for record in records]


def _generate(records: Sequence[InstanceRecord], directory: Path) -> None:
    # Written beside the target and renamed: an interrupted run never leaves a half-filled cache entry.
    staging = Path(tempfile.mkdtemp(prefix=directory.name + ".", dir=directory.parent))
    try:
        for record in records:
            write_instance(record, staging / dicom_file_name(record))
        (staging / ".complete").touch()
        if directory.exists():
            shutil.rmtree(directory)  # a leftover without ".complete"
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
