"""Launch while building: the launch registers and dispatches a build and answers at once; the build stores the
manifest, or one whose ERROR <Message> says why; the dispatchers (Lambda Event invocation, threads, inline)."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from weasis_link.auth import Caller
from weasis_link.config import AppConfig
from weasis_link.connectors.base import QueryContext
from weasis_link.criteria import QueryCriteria, criteria_from_pairs
from weasis_link.errors import ArchiveUnavailable, BuilderUnavailable, CriterionDeactivated, InvalidRequest
from weasis_link.launch import (
    Builder,
    BuildRequest,
    InlineDispatcher,
    LambdaDispatcher,
    Launcher,
    ThreadDispatcher,
    make_dispatcher,
)
from weasis_link.launch_uri import LaunchOptions
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore
from weasis_link.study_tree import StudyTreeBuilder
from weasis_link_dev.configs import config_from_text
from weasis_link_dev.stored import stored_manifest
from weasis_link_dev.weasis_client import manifest_url_of, parse_launch_uri, read_manifest, validate

BUCKET, REGION = "weasis-link-test", "eu-central-1"  # the manifest_store fixture's
NOW = 1_795_342_530.0
BASE = "https://api.example.org"
TOKEN = "eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl"
CALLER = Caller(
    token=TOKEN, subject="alice", scopes=frozenset({"weasis.launch"}), expires_at=int(NOW) + 3600, claims={}
)
CONFIG = """
wado:
  authentication:
    oauth2: {url: "https://pacs.example/wado"}
connector:
  default: [a]
  config:
    a:
      type: DICOM
      search-criteria: {deactivated: [SOP_INSTANCE_UID]}
      dicom-connector: {calling-aet: W, aet: A, host: a, port: 104}
"""


class FakeConnector:
    connector_id = "a"

    def __init__(self, behaviour: Callable[[StudyTreeBuilder], None]) -> None:
        self.behaviour = behaviour

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        self.behaviour(builder)


def two_instances(builder: StudyTreeBuilder) -> None:
    for i in range(2):
        builder.add_instance(
            {
                "PatientID": "P1",
                "PatientName": "Doe^J",
                "StudyInstanceUID": "1.1",
                "SeriesInstanceUID": "1.1.1",
                "SOPInstanceUID": f"1.1.1.{i}",
            }
        )


def unreachable(builder: StudyTreeBuilder) -> None:
    raise ArchiveUnavailable("the archive cannot be reached")


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return config_from_text(CONFIG, tmp_path)


@pytest.fixture
def store(manifest_store: ManifestStore) -> ManifestStore:
    return manifest_store  # tests/conftest.py: moto's in-process S3, bucket BUCKET in REGION


class Recorder:
    def __init__(self) -> None:
        self.requests: list[BuildRequest] = []

    def dispatch(self, request: BuildRequest) -> None:
        self.requests.append(request)


@dataclass(frozen=True)
class Launch:
    """Both sides of a launch: the API's launcher and the builder (the dispatcher between them is recorded)."""

    launcher: Launcher
    builder: Builder

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        return self.launcher.launch(*args, **kwargs)

    def run_build(self, request: BuildRequest) -> str:
        return self.builder.run_build(request)


def make_launcher(
    config: AppConfig, store: ManifestStore, behaviour: Callable[[StudyTreeBuilder], None] = two_instances
) -> tuple[Launch, Recorder]:
    settings = ServiceSettings.model_validate(
        {"manifest_bucket": BUCKET, "oauth_issuer": "i", "oauth_audiences": ["a"], "oauth_jwks_url": "https://i/j"}
    )
    service = ManifestService(
        settings, config, store, connector_factory=lambda _: FakeConnector(behaviour), clock=lambda: NOW
    )
    recorder = Recorder()
    launcher = Launcher(service, store, recorder, settings.build_deadline_seconds, clock=lambda: NOW)
    builder = Builder(service, store, settings.build_deadline_seconds, clock=lambda: NOW)
    return Launch(launcher, builder), recorder


def keys() -> list[str]:
    answer = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in answer.get("Contents", []))


QUERY = [("studyUID", "1.1"), ("access_token", TOKEN), ("pro", "weasis.aet X")]


def test_launch_registers_the_build_dispatches_it_and_answers_the_short_link(
    config: AppConfig, store: ManifestStore
) -> None:
    launcher, recorder = make_launcher(config, store)
    result = launcher.launch(QUERY, criteria_from_pairs(QUERY), CALLER, LaunchOptions(), BASE)
    assert result.manifest_link == f"{BASE}/manifests/{result.manifest_id}"
    assert manifest_url_of(result.weasis_url) == result.manifest_link
    assert len(result.weasis_url) <= 500
    assert keys() == [f"manifests/{result.manifest_id}.pending"]  # nothing built yet: only the marker
    [request] = recorder.requests
    assert request.manifest_id == result.manifest_id and request.token == TOKEN
    assert ("access_token", TOKEN) not in request.query  # the token travels once, in its own field
    assert TOKEN not in repr(request) and TOKEN not in str(request)
    assert store.build_deadline(result.manifest_id) == int(NOW + 60 + 15)  # BUILD_DEADLINE_SECONDS + overhead


def test_refusals_happen_at_launch_and_register_nothing(config: AppConfig, store: ManifestStore) -> None:
    launcher, recorder = make_launcher(config, store)
    with pytest.raises(CriterionDeactivated):
        launcher.launch([], criteria_from_pairs([("objectUID", "1.2")]), CALLER, None, BASE)
    long_options = LaunchOptions(properties=tuple((f"weasis.p{i}", "x" * 40) for i in range(8)))
    with pytest.raises(InvalidRequest, match="characters"):
        launcher.launch(QUERY, criteria_from_pairs(QUERY), CALLER, long_options, BASE)
    assert keys() == [] and recorder.requests == []


def test_the_build_stores_the_manifest_under_the_launched_id(config: AppConfig, store: ManifestStore) -> None:
    launcher, recorder = make_launcher(config, store)
    result = launcher.launch(QUERY, criteria_from_pairs(QUERY), CALLER, None, BASE)
    assert launcher.run_build(recorder.requests[0]) == "built"
    xml = gzip.decompress(stored_manifest(store, result.manifest_id))
    assert validate(xml) == []
    [view] = read_manifest(xml)
    assert len(view.instances) == 2 and view.http_tags == {"Authorization": f"Bearer {TOKEN}"}


def test_a_failed_build_stores_an_error_manifest(config: AppConfig, store: ManifestStore) -> None:
    launcher, recorder = make_launcher(config, store, unreachable)
    result = launcher.launch(QUERY, criteria_from_pairs(QUERY), CALLER, None, BASE)
    assert launcher.run_build(recorder.requests[0]) == "failed"
    xml = gzip.decompress(stored_manifest(store, result.manifest_id))
    assert validate(xml) == []
    [view] = read_manifest(xml)
    assert view.message is not None and view.message["severity"] == "ERROR"
    assert "cannot be reached" in view.message["description"]
    assert view.http_tags == {}  # no images, no credentials


def test_a_crashing_build_still_stores_an_error_manifest(config: AppConfig, store: ManifestStore) -> None:
    def crash(builder: StudyTreeBuilder) -> None:
        raise RuntimeError("bug")

    launcher, recorder = make_launcher(config, store, crash)
    result = launcher.launch(QUERY, criteria_from_pairs(QUERY), CALLER, None, BASE)
    launcher.run_build(recorder.requests[0])
    [view] = read_manifest(gzip.decompress(stored_manifest(store, result.manifest_id)))
    assert view.message is not None and view.message["severity"] == "ERROR"


def test_a_build_that_starts_after_its_manifest_expired_stores_nothing(config: AppConfig, store: ManifestStore) -> None:
    launcher, recorder = make_launcher(config, store)
    launcher.launch(QUERY, criteria_from_pairs(QUERY), CALLER, None, BASE)
    late = recorder.requests[0].model_copy(update={"expires_at": int(NOW) - 1})
    assert launcher.run_build(late) == "expired"
    assert all(k.endswith(".pending") for k in keys())


def test_a_short_lived_token_is_reported_at_launch(config: AppConfig, store: ManifestStore) -> None:
    launcher, _ = make_launcher(config, store)
    short = Caller(token=TOKEN, subject="s", scopes=frozenset(), expires_at=int(NOW) + 100, claims={})
    result = launcher.launch(QUERY, criteria_from_pairs(QUERY), short, None, BASE)
    assert result.warnings and "expires in 100 s" in result.warnings[0]


def build_request(**changes: Any) -> BuildRequest:
    """A launch's build request; `changes` are its fields."""
    fields: dict[str, Any] = {
        "manifest_id": "1795342830-" + "a" * 32,
        "expires_at": 1795342830,
        "query": [],
        "token": TOKEN,
        "subject": "s",
        "token_expires_at": 0,
        "launched_at": NOW,
    }
    return BuildRequest(**(fields | changes))


def test_build_requests_round_trip_as_json() -> None:
    request = build_request(query=[("studyUID", "1.2")], token_expires_at=1795346130)
    assert BuildRequest.model_validate(json.loads(request.model_dump_json())) == request
    sample = json.loads((Path(__file__).parents[2] / "events/build_request.json").read_text())
    assert BuildRequest.model_validate(sample).query == [("patientID", "WLS-1001"), ("mostRecentResults", "1")]


def test_lambda_dispatcher_invokes_the_builder_asynchronously() -> None:
    client = boto3.client("lambda", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="y")
    request = build_request()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {"FunctionName": "stack-builder", "InvocationType": "Event", "Payload": request.model_dump_json().encode()},
        )
        LambdaDispatcher("stack-builder", client).dispatch(request)
        stub.add_client_error("invoke", "TooManyRequestsException", http_status_code=429)
        with pytest.raises(BuilderUnavailable, match="TooManyRequestsException"):
            LambdaDispatcher("stack-builder", client).dispatch(request)


def test_dispatcher_choice() -> None:
    run: Callable[[BuildRequest], Any] = lambda _: None  # noqa: E731
    assert isinstance(make_dispatcher("f", "eu-central-1", run, on_lambda=True), LambdaDispatcher)
    assert isinstance(make_dispatcher(None, "eu-central-1", run, on_lambda=True), InlineDispatcher)
    threads = make_dispatcher(None, "eu-central-1", run, on_lambda=False)
    assert isinstance(threads, ThreadDispatcher)
    threads.shutdown()


def test_thread_dispatcher_builds_in_the_background() -> None:
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def run(request: BuildRequest) -> None:
        started.set()
        release.wait(5)
        done.append(request.manifest_id)

    dispatcher = ThreadDispatcher(run)
    request = build_request(manifest_id="1795342830-" + "b" * 32, expires_at=0, launched_at=0)
    dispatcher.dispatch(request)  # returns while the build runs
    assert started.wait(5) and done == []
    release.set()
    dispatcher.shutdown()
    assert done == [request.manifest_id]
    with pytest.raises(BuilderUnavailable):
        dispatcher.dispatch(request)


def test_config_passthrough_reaches_the_uri(config: AppConfig, store: ManifestStore) -> None:
    launcher, _ = make_launcher(config, store)
    options = LaunchOptions(cdb="https://viewer.example/weasis", properties=(("weasis.aet", "MY AET"),))
    result = launcher.launch(QUERY, criteria_from_pairs(QUERY), CALLER, options, BASE)
    commands = parse_launch_uri(result.weasis_url)
    assert commands["weasis:config"] == [["cdb=https://viewer.example/weasis", "pro=weasis.aet MY AET"]]
