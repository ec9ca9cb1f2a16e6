"""Token lifetime: a token that dies before the manifest is reported (JSON warning + WARN <Message>), and a
connector may inject a service token obtained by client credentials instead (always, or when the caller's token
would expire); a service token that cannot be obtained falls back to the caller's, with the warning."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from weasis_link.auth import Caller
from weasis_link.connectors.base import QueryContext
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import ArchiveUnavailable
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.oauth_client import AccessToken
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore
from weasis_link.study_tree import StudyTreeBuilder
from weasis_link_dev.configs import config_from_text
from weasis_link_dev.stored import stored_manifest
from weasis_link_dev.weasis_client import read_manifest

BUCKET = "weasis-link-test"
NOW = 1_795_342_530.0
CALLER_TOKEN = "eyJjYWxsZXI.eyJzdWIi.c2ln"
SERVICE_TOKEN = "eyJzZXJ2aWNl.eyJzdWIi.c2ln"
CONFIG = """
connector:
  default: [plain, service, always]
  config:
    plain:
      type: DICOM
      wado: {authentication: {oauth2: {url: "https://plain.example/wado"}}}
      dicom-connector: {calling-aet: W, aet: A, host: a, port: 104}
    service:
      type: DICOM
      wado:
        authentication:
          oauth2:
            url: "https://service.example/wado"
            service-token:
              client-credentials: {token-url: "https://idp.example/token", client-id: weasis-link, client-secret: s}
      dicom-connector: {calling-aet: W, aet: B, host: b, port: 104}
    always:
      type: DICOM
      wado:
        authentication:
          oauth2:
            url: "https://always.example/wado"
            service-token:
              use: always
              client-credentials: {token-url: "https://idp.example/token", client-id: weasis-link, client-secret: s}
      dicom-connector: {calling-aet: W, aet: C, host: c, port: 104}
"""


class OneInstance:
    def __init__(self, connector_id: str) -> None:
        self.connector_id = connector_id

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        uid = f"1.{len(self.connector_id)}"
        builder.add_instance(
            {"PatientID": "P", "StudyInstanceUID": uid, "SeriesInstanceUID": f"{uid}.1", "SOPInstanceUID": f"{uid}.1.1"}
        )


class FakeProvider:
    def __init__(self, lifetime: float, fail: bool = False) -> None:
        self.lifetime, self.fail, self.asked = lifetime, fail, 0

    def token(self, *, min_validity_seconds: float = 0.0) -> AccessToken:
        self.asked += 1
        if self.fail:
            raise ArchiveUnavailable("the token endpoint cannot be reached")
        return AccessToken(SERVICE_TOKEN, NOW + self.lifetime)


@pytest.fixture
def make(tmp_path: Path, manifest_store: ManifestStore) -> Any:
    config = config_from_text(CONFIG, tmp_path)
    settings = ServiceSettings.model_validate(
        {"manifest_bucket": BUCKET, "oauth_issuer": "i", "oauth_audiences": ["a"], "oauth_jwks_url": "https://i/j"}
    )

    def build(provider: FakeProvider) -> tuple[ManifestService, ManifestStore]:
        service = ManifestService(
            settings,
            config,
            manifest_store,
            connector_factory=OneInstance,
            clock=lambda: NOW,
            token_providers=lambda _: provider,
        )
        return service, manifest_store

    return build


def caller(lifetime: int) -> Caller:
    return Caller(token=CALLER_TOKEN, subject="s", scopes=frozenset(), expires_at=int(NOW) + lifetime, claims={})


def tokens_by_archive(store: ManifestStore, manifest_id: str) -> dict[str, tuple[str, str | None]]:
    views = read_manifest(gzip.decompress(stored_manifest(store, manifest_id)))
    return {v.arc_id: (v.http_tags.get("Authorization", ""), v.message["title"] if v.message else None) for v in views}


def test_a_long_lived_caller_token_is_injected_except_where_a_service_token_is_always_used(make: Any) -> None:
    service, store = make(FakeProvider(3600))
    result = service.create_manifest(criteria_from_query_string("patientID=P"), caller(3600))
    assert result.warnings == []
    assert tokens_by_archive(store, result.manifest_id) == {
        "plain": (f"Bearer {CALLER_TOKEN}", None),
        "service": (f"Bearer {CALLER_TOKEN}", None),
        "always": (f"Bearer {SERVICE_TOKEN}", None),
    }


def test_a_short_lived_caller_token_is_replaced_where_configured_and_reported_elsewhere(make: Any) -> None:
    service, store = make(FakeProvider(3600))
    result = service.create_manifest(criteria_from_query_string("patientID=P"), caller(120))
    assert result.warnings == [
        "The access token expires in 120 s, before the manifest does: Weasis may fail to load images."
    ]
    assert tokens_by_archive(store, result.manifest_id) == {
        "plain": (f"Bearer {CALLER_TOKEN}", "Access token expires soon"),
        "service": (f"Bearer {SERVICE_TOKEN}", None),
        "always": (f"Bearer {SERVICE_TOKEN}", None),
    }
    assert service.access.token_warning(caller(120), ["service", "always"]) is None  # what the launch page shows
    assert service.access.token_warning(caller(120), ["plain"]) is not None


def test_a_short_lived_service_token_is_reported_too(make: Any) -> None:
    service, store = make(FakeProvider(200))
    result = service.create_manifest(criteria_from_query_string("patientID=P&archive=always"), caller(3600))
    assert result.warnings == [
        "The service token expires in 200 s, before the manifest does: Weasis may fail to load images."
    ]
    assert tokens_by_archive(store, result.manifest_id)["always"] == (
        f"Bearer {SERVICE_TOKEN}",
        "Service token expires soon",
    )


def test_an_unavailable_service_token_falls_back_to_the_callers(make: Any) -> None:
    service, store = make(FakeProvider(3600, fail=True))
    result = service.create_manifest(criteria_from_query_string("patientID=P&archive=service"), caller(120))
    assert tokens_by_archive(store, result.manifest_id)["service"] == (
        f"Bearer {CALLER_TOKEN}",
        "Access token expires soon",
    )
    assert result.warnings and "access token expires in 120 s" in result.warnings[0]
