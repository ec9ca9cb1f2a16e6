"""Uploaded manifests: byte-equal storage of valid XML, the schema's errors for invalid XML, size limits (gzip bombs
included), the JSON list of UIDs, and opt-in token injection limited to configured WADO URLs."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from weasis_link.auth import Caller
from weasis_link.config import AppConfig
from weasis_link.connectors.base import QueryContext
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import InvalidManifest, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from weasis_link.http.requests import read_upload
from weasis_link.launch_uri import LaunchOptions
from weasis_link.service import ManifestResult, ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, s3_client
from weasis_link.study_tree import StudyTreeBuilder
from weasis_link.upload import XSD_PATH, ManifestUploads, uid_list_pairs, validate_manifest
from weasis_link_dev.configs import config_from_text
from weasis_link_dev.stored import stored_manifest
from weasis_link_dev.weasis_client import XSD_REFERENCE, read_manifest, validate

BUCKET = "weasis-link-test"
NOW = 1_795_342_530.0
BASE = "https://api.example.org"
TOKEN = "eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl"
CALLER = Caller(token=TOKEN, subject="alice", scopes=frozenset(), expires_at=int(NOW) + 3600, claims={})
CONFIG = """
wado:
  authentication:
    oauth2: {url: "https://pacs.example/wado"}
connector:
  config:
    pacs:
      type: DICOM
      dicom-connector: {calling-aet: W, aet: A, host: a, port: 104}
"""
# Latin-1, single quotes, a comment, odd spacing: whatever the uploader wrote must come back byte for byte.
VALID = (
    b"<?xml version='1.0' encoding='ISO-8859-1'?>\n<!-- from the RIS -->\n"
    b"<manifest xmlns='http://www.weasis.org/xsd/2.5'>\n"
    b"  <arcQuery arcId='pacs'   baseUrl='https://pacs.example/wado'>\n"
    b"    <Patient PatientID='P1' PatientName='M\xfcller^J\xfcrgen'>\n"
    b"      <Study StudyInstanceUID='1.2.3'><Series SeriesInstanceUID='1.2.3.4'>\n"
    b"        <Instance SOPInstanceUID='1.2.3.4.5'/><Instance SOPInstanceUID='1.2.3.4.6'/>\n"
    b"      </Series></Study>\n    </Patient>\n  </arcQuery>\n"
    b"  <arcQuery arcId='elsewhere' baseUrl='https://other.example/wado'/>\n"
    b"</manifest>\n"
)


def test_the_shipped_xsd_is_the_reference_file_byte_for_byte() -> None:
    assert XSD_PATH.read_bytes() == XSD_REFERENCE.read_bytes()


class OneStudy:
    connector_id = "pacs"

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        builder.add_instance(
            {
                "PatientID": "P1",
                "StudyInstanceUID": "1.2.3",
                "SeriesInstanceUID": "1.2.3.4",
                "SOPInstanceUID": "1.2.3.4.5",
            }
        )


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return config_from_text(CONFIG, tmp_path)


class Uploader:
    """What POST /manifests does with a body: read it as HTTP says (media type, encoding, size), then upload it."""

    def __init__(self, uploads: ManifestUploads, max_bytes: int) -> None:
        self._uploads = uploads
        self._max_bytes = max_bytes

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
    ) -> ManifestResult:
        document = read_upload(body, content_type, content_encoding, self._max_bytes)
        return self._uploads.upload(
            document.media_type, document.content, caller, launch, base_url, inject_token=inject_token
        )


@pytest.fixture
def uploads(config: AppConfig, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Uploader, ManifestStore]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = s3_client("us-east-1")
        client.create_bucket(Bucket=BUCKET)
        store = ManifestStore(client, BUCKET)
        settings = ServiceSettings.model_validate(
            {"manifest_bucket": BUCKET, "oauth_issuer": "i", "oauth_audiences": ["a"], "oauth_jwks_url": "https://i/j"}
        )
        service = ManifestService(settings, config, store, connector_factory=lambda _: OneStudy(), clock=lambda: NOW)
        yield Uploader(ManifestUploads(service), 4096), store


def test_valid_xml_is_stored_byte_equal_and_linked(uploads: tuple[Uploader, ManifestStore]) -> None:
    up, store = uploads
    result = up.upload(VALID, "application/xml", None, CALLER, None, BASE)
    assert gzip.decompress(stored_manifest(store, result.manifest_id)) == VALID
    assert result.manifest_link == f"{BASE}/manifests/{result.manifest_id}"
    assert (result.patients, result.studies, result.series, result.instances) == (1, 1, 1, 2)
    assert TOKEN.encode() not in gzip.decompress(
        stored_manifest(store, result.manifest_id)
    )  # nothing injected by default


def test_gzipped_uploads_are_read_either_way(uploads: tuple[Uploader, ManifestStore]) -> None:
    up, store = uploads
    for content_type, encoding in (("application/xml", "gzip"), ("application/gzip", None)):
        result = up.upload(gzip.compress(VALID), content_type, encoding, CALLER, None, BASE)
        assert gzip.decompress(stored_manifest(store, result.manifest_id)) == VALID


def test_schema_errors_are_reported(uploads: tuple[Uploader, ManifestStore]) -> None:
    up, _ = uploads
    invalid = VALID.replace(b"SOPInstanceUID='1.2.3.4.5'", b"SOPInstanceUID='1.2.x'")
    with pytest.raises(InvalidManifest) as raised:
        up.upload(invalid, "text/xml", None, CALLER, None, BASE)
    assert "SOPInstanceUID" in raised.value.detail
    assert raised.value.problems[0].field == "line 7"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<manifest", "not well-formed"),
        (b"not xml at all", "not well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE manifest [<!ENTITY x "y">]>'
            b'<manifest xmlns="http://www.weasis.org/xsd/2.5">&x;</manifest>',
            "DOCTYPE",
        ),
    ],
)
def test_malformed_xml_is_400(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as raised:
        validate_manifest(body)
    assert not isinstance(raised.value, InvalidManifest)


def test_the_legacy_1x_format_is_refused() -> None:
    legacy = b'<wado_query xmlns="http://www.weasis.org/xsd" wadoURL="https://x/wado"/>'
    with pytest.raises(InvalidManifest):
        validate_manifest(legacy)


def test_size_limits_apply_to_the_document_even_when_gzipped() -> None:
    with pytest.raises(PayloadTooLarge):
        read_upload(b" " * 5000, "application/xml", None, 4096)
    bomb = gzip.compress(b" " * 4_000_000)  # 4 kB that inflate to 4 MB
    assert len(bomb) < 4096
    with pytest.raises(PayloadTooLarge):
        read_upload(bomb, "application/xml", "gzip", 4096)
    with pytest.raises(InvalidRequest, match="gzip"):
        read_upload(b"\x1f\x8bnot gzip", "application/gzip", None, 4096)


@pytest.mark.parametrize(("content_type", "encoding"), [("text/plain", None), (None, None), ("application/xml", "br")])
def test_other_media_types_are_415(content_type: str | None, encoding: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        read_upload(VALID, content_type, encoding, 4096)


def test_json_uid_lists() -> None:
    assert uid_list_pairs(b'["1.2", "1.3"]') == [("studyUID", "1.2"), ("studyUID", "1.3")]
    assert uid_list_pairs(b'{"seriesUID": ["1.2.3"], "archive": "pacs", "mostRecentResults": 2}') == [
        ("seriesUID", "1.2.3"),
        ("archive", "pacs"),
        ("mostRecentResults", "2"),
    ]
    for bad in (b"{", b'"1.2"', b'{"sopUID": ["1"]}', b'{"studyUID": [{"a": 1}]}', b'{"studyUID": [true]}'):
        with pytest.raises(InvalidRequest):
            uid_list_pairs(bad)


def test_json_uploads_are_resolved_with_the_callers_token(uploads: tuple[Uploader, ManifestStore]) -> None:
    up, store = uploads
    result = up.upload(b'{"studyUID": ["1.2.3"]}', "application/json", None, CALLER, None, BASE)
    xml = gzip.decompress(stored_manifest(store, result.manifest_id))
    assert validate(xml) == []
    [view] = read_manifest(xml)
    assert view.http_tags == {"Authorization": f"Bearer {TOKEN}"} and result.instances == 1


def test_token_injection_is_opt_in_and_only_for_configured_wado_urls(
    uploads: tuple[Uploader, ManifestStore],
) -> None:
    up, store = uploads
    result = up.upload(VALID, "application/xml", None, CALLER, None, BASE, inject_token=True)
    xml = gzip.decompress(stored_manifest(store, result.manifest_id))
    assert validate(xml) == []
    pacs, elsewhere = read_manifest(xml)
    assert pacs.http_tags == {"Authorization": f"Bearer {TOKEN}"}
    assert elsewhere.http_tags == {}  # a host the uploader chose never gets the caller's token
    assert any("elsewhere" in w for w in result.warnings)
    already = VALID.replace(b"<Patient", b"<httpTag key='Authorization' value='Bearer x'/><Patient", 1)
    with pytest.raises(InvalidManifest, match="already has an Authorization"):
        up.upload(already, "application/xml", None, CALLER, None, BASE, inject_token=True)
