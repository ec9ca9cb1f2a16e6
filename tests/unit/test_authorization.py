"""Claims-based authorization: archive `access` rules (a caller without the claim never causes a query to the
archive; naming it is 403), per-route scopes, and a capability that never outlives its token."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from weasis_link.auth import Caller
from weasis_link.capability import capped_expiry
from weasis_link.claims_access import AccessConfig, claim_value, require_scopes
from weasis_link.connectors.base import QueryContext
from weasis_link.criteria import QueryCriteria, criteria_from_pairs
from weasis_link.errors import ArchiveForbidden, InsufficientScope, TokenExpiresTooSoon
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.launch import InlineDispatcher, Launcher
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, expiry_of
from weasis_link.study_tree import StudyTreeBuilder
from weasis_link_dev.configs import config_from_text

NOW = 1_795_342_530.0
CONFIG = """
wado: {url: "https://pacs.example/wado"}
connector:
  config:
    open:
      type: DICOM
      dicom-connector: {calling-aet: W, aet: A, host: a, port: 104}
    radiology:
      type: DICOM
      access:
        any-of:
          - {claim: cognito:groups, contains: radiology}
          - {claim: realm_access.roles, contains: pacs-read}
          - {claim: https://example.org/roles, contains: Images.Read}
      dicom-connector: {calling-aet: W, aet: B, host: b, port: 104}
"""


requests_per_archive: Counter[str] = Counter()  # queries per archive, reset after each test


class CountingConnector:
    """Counts the queries each archive receives (the proof that a forbidden archive is never asked)."""

    def __init__(self, connector_id: str, requests: Counter[str]) -> None:
        self.connector_id = connector_id
        self.requests = requests

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        self.requests[self.connector_id] += 1
        uid = f"1.{len(self.connector_id)}"
        builder.add_instance(
            {"PatientID": "P", "StudyInstanceUID": uid, "SeriesInstanceUID": f"{uid}.1", "SOPInstanceUID": f"{uid}.1.1"}
        )


@pytest.fixture
def service(tmp_path: Path, manifest_store: ManifestStore) -> Iterator[tuple[ManifestService, ManifestStore]]:
    config = config_from_text(CONFIG, tmp_path)
    settings = ServiceSettings.model_validate(
        {"manifest_bucket": "bkt", "oauth_issuer": "i", "oauth_audiences": ["a"], "oauth_jwks_url": "https://i/j"}
    )
    service = ManifestService(
        settings,
        config,
        manifest_store,
        connector_factory=lambda cid: CountingConnector(cid, requests_per_archive),
        clock=lambda: NOW,
    )
    yield service, manifest_store
    requests_per_archive.clear()


def caller(claims: dict[str, Any] | None = None, lifetime: int = 3600) -> Caller:
    return Caller("eyJh.eyJz.c2ln", "alice", frozenset(), int(NOW) + lifetime, claims or {})


# --- archive access -------------------------------------------------------------------------------------------
def test_a_caller_without_the_group_never_causes_a_query_to_that_archive(
    service: tuple[ManifestService, ManifestStore],
) -> None:
    svc, _ = service
    result = svc.create_manifest(criteria_from_query_string("patientID=P"), caller({"cognito:groups": ["nursing"]}))
    assert [a.archive_id for a in result.archives] == ["open"]
    assert requests_per_archive == Counter({"open": 1})
    with pytest.raises(ArchiveForbidden, match="radiology"):
        svc.create_manifest(criteria_from_query_string("patientID=P&archive=radiology"), caller())
    assert requests_per_archive["radiology"] == 0


@pytest.mark.parametrize(
    "claims",
    [
        {"cognito:groups": ["radiology", "x"]},
        {"realm_access": {"roles": ["pacs-read"]}},
        {"https://example.org/roles": ["Images.Read"]},  # a claim name holding dots
    ],
)
def test_a_caller_with_one_of_the_claims_uses_the_archive(
    service: tuple[ManifestService, ManifestStore], claims: dict[str, Any]
) -> None:
    svc, _ = service
    result = svc.create_manifest(criteria_from_query_string("patientID=P"), caller(claims))
    assert sorted(a.archive_id for a in result.archives) == ["open", "radiology"]
    assert requests_per_archive == Counter({"open": 1, "radiology": 1})


def test_the_launch_refuses_a_forbidden_archive_before_writing_anything(
    service: tuple[ManifestService, ManifestStore],
) -> None:
    svc, store = service
    launcher = Launcher(svc, store, InlineDispatcher(lambda _: None), 60, clock=lambda: NOW)
    with pytest.raises(ArchiveForbidden):
        launcher.launch(
            [("patientID", "P"), ("archive", "radiology")],
            criteria_from_pairs([("patientID", "P"), ("archive", "radiology")]),
            caller(),
            None,
            "https://api.example.org",
        )
    assert store._s3.list_objects_v2(Bucket=store.bucket).get("KeyCount") == 0


@pytest.mark.parametrize(
    ("path", "claims", "value"),
    [
        ("roles", {"roles": ["a"]}, ["a"]),
        ("realm_access.roles", {"realm_access": {"roles": ["r"]}}, ["r"]),
        ("resource_access.weasis.roles", {"resource_access": {"weasis": {"roles": ["w"]}}}, ["w"]),
        ("https://example.org/roles", {"https://example.org/roles": ["n"]}, ["n"]),
        ("a.b", {"a.b": {"c": 1}, "a": {"b": 2}}, {"c": 1}),  # the longest existing name wins
        ("missing.path", {"missing": "x"}, None),
    ],
)
def test_claim_paths_are_dotted(path: str, claims: dict[str, Any], value: Any) -> None:
    assert claim_value(claims, path) == value


@pytest.mark.parametrize(
    ("claim", "allowed"),
    [(["radiology"], True), ("radiology", True), ("openid radiology", True), (["radiologyx"], False), (7, False)],
)
def test_contains_reads_lists_strings_and_scope_strings(claim: Any, allowed: bool) -> None:
    rule = AccessConfig.model_validate({"any-of": [{"claim": "g", "contains": "radiology"}]})
    assert rule.allows({"g": claim}) is allowed


def test_route_scopes_are_required_on_top_of_the_global_ones() -> None:
    require_scopes(frozenset({"patient/ImagingStudy.rs"}), ["patient/ImagingStudy.rs"], "Reading images")
    with pytest.raises(InsufficientScope, match=r"Uploading a manifest needs the scope weasis\.upload"):
        require_scopes(frozenset({"patient/ImagingStudy.rs"}), ["weasis.upload"], "Uploading a manifest")


# --- a capability never outlives its token --------------------------------------------------------------------
def test_a_token_expiring_in_60_s_caps_the_manifest_its_short_link_and_its_presigned_url(
    service: tuple[ManifestService, ManifestStore],
) -> None:
    svc, _ = service
    token = caller(lifetime=60)
    result = svc.create_manifest(criteria_from_query_string("patientID=P"), token, base_url="https://api.example.org")
    assert result.expires_at.timestamp() == token.expires_at
    link_expiry = expiry_of(result.manifest_link.rsplit("/", 1)[1])
    assert link_expiry is not None and link_expiry.timestamp() <= token.expires_at
    presigned = urllib.parse.parse_qs(urllib.parse.urlsplit(result.manifest_url).query)
    assert int(presigned["X-Amz-Expires"][0]) <= 60


def test_a_launch_with_a_token_expiring_in_60_s_is_capped_too(service: tuple[ManifestService, ManifestStore]) -> None:
    svc, store = service
    token = caller(lifetime=60)
    result = Launcher(svc, store, InlineDispatcher(lambda _: None), 60, clock=lambda: NOW).launch(
        [("patientID", "P")], criteria_from_query_string("patientID=P"), token, None, "https://api.example.org"
    )
    assert result.expires_at.timestamp() <= token.expires_at


def test_a_token_below_the_floor_is_refused_and_nothing_is_queried(
    service: tuple[ManifestService, ManifestStore],
) -> None:
    svc, _ = service
    with pytest.raises(TokenExpiresTooSoon, match="expires in 10 s"):
        svc.create_manifest(criteria_from_query_string("patientID=P"), caller(lifetime=10))
    assert requests_per_archive == Counter()


def test_capped_expiry() -> None:
    ttl = dt.datetime.fromtimestamp(NOW + 300, tz=dt.UTC)
    assert capped_expiry(ttl, NOW + 3600, NOW, 30) == ttl
    assert capped_expiry(ttl, NOW + 45.9, NOW, 30).timestamp() == NOW + 45
    with pytest.raises(TokenExpiresTooSoon):
        capped_expiry(ttl, NOW + 29, NOW, 30)
