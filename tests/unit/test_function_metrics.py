"""Each function's CloudWatch metrics, read from what Powertools prints (EMF JSON lines on stdout), as CloudWatch
would ingest them: the builder's outcomes (built, failed, timed out) and archive figures, the cleaner's deletions,
failed deletions and crashed runs; the namespace and `service` dimension come from the environment, which
template.yaml derives from the stack name. A failed build raises after it is counted, so Lambda counts an error.

Run: .venv/bin/pytest tests/unit/test_function_metrics.py -q
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cold_start import reset_cold_start_flag
from botocore.stub import Stubber
from moto import mock_aws

from weasis_link.metrics import BuildFailed
from weasis_link.runtime import Runtime
from weasis_link.storage import new_manifest_id
from weasis_link_dev.local_api import Handler, LambdaContext
from weasis_link_dev.loopback_http import Answer, LoopbackServer, Request, unused_port

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
# The cleaner is cold-started here with a stack's names; the builder's module is the session's (tests/conftest.py).
NAMESPACE = "WeasisLink/metrics-test"
SERVICE = "metrics-test"
BUILDER_NAMES = {"namespace": "WeasisLink", "service": "weasis-link"}  # service_env in tests/conftest.py
REGION = "eu-central-1"


def emitted(stdout: str, namespace: str = NAMESPACE, service: str = SERVICE) -> list[tuple[str, float, dict[str, str]]]:
    """(metric, value, dimensions) for every metric of every EMF line, checked against the EMF structure."""
    found = []
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob: dict[str, Any] = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == namespace
            for dimension_set in directive["Dimensions"]:
                dimensions = {name: blob[name] for name in dimension_set}
                assert dimensions["service"] == service
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]  # EMF: a number, or a list of them
                    found += [
                        (metric["Name"], float(v), dimensions) for v in (value if isinstance(value, list) else [value])
                    ]
    return found


def values(stdout: str, name: str, **dimensions: str) -> list[float]:
    wanted = {"service": SERVICE, **dimensions}
    return [v for n, v, d in emitted(stdout) if n == name and d == wanted]


def builder_values(stdout: str, name: str, **dimensions: str) -> list[float]:
    wanted = {"service": BUILDER_NAMES["service"], **dimensions}
    return [v for n, v, d in emitted(stdout, **BUILDER_NAMES) if n == name and d == wanted]


def slow_pacs(request: Request) -> Answer:
    """A DICOMweb endpoint that answers nothing for longer than the connector's read timeout."""
    time.sleep(1.5)
    return Answer(200, b"[]")


@pytest.fixture(scope="module")
def metrics_env(service_env: dict[str, str]) -> dict[str, str]:
    return {
        **service_env,
        "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": SERVICE,
        "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
    }


@pytest.fixture(scope="module")
def faulty_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sample archive, one archive that refuses connections and one slower than its read timeout."""
    pacs = LoopbackServer(slow_pacs).start()
    config = yaml.safe_load((ROOT / "functions/api/weasis-link.yaml").read_text())
    config["connector"]["config"]["down"] = {
        "type": "DICOM_WEB",
        "dicom-web-connector": {"url": f"http://127.0.0.1:{unused_port()}/dicom-web", "retries": 0},
    }
    config["connector"]["config"]["slow"] = {
        "type": "DICOM_WEB",
        "dicom-web-connector": {"url": pacs.url("/dicom-web"), "read-timeout-seconds": 0.2, "retries": 0},
    }
    path = tmp_path_factory.mktemp("metrics") / "weasis-link.yaml"
    # The sample archive's init script is relative to the bundled file: keep its directory reachable.
    (path.parent / "sample_archive").symlink_to(ROOT / "layers/shared/weasis_link/sample_archive")
    path.write_text(json.dumps(config))
    yield path
    pacs.stop()


@pytest.fixture
def builder(
    function_modules: dict[str, Any],
    runtime_factory: Callable[..., Runtime],
    faulty_config: Path,
    service_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Handler:
    """functions/builder/app.py's handler over a runtime with that configuration (S3 on moto)."""
    for name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):  # as Lambda sets them, always
        monkeypatch.setenv(name, service_env[name])
    handler: Handler = function_modules["builder"].make_handler(runtime_factory(config_file=faulty_config))
    return handler


def build_request(**query: str) -> dict[str, Any]:
    request: dict[str, Any] = json.loads((EVENTS / "build_request.json").read_text())
    expires = int(time.time()) + 300
    request.update(
        manifest_id=f"{expires}-" + "B" * 32,
        expires_at=expires,
        query=[["patientID", "WLS-1001"], *([k, v] for k, v in query.items())],
        token="not-a-real-token",
        token_expires_at=expires + 600,
        launched_at=time.time(),
    )
    return request


def test_a_successful_build_counts_its_outcome_time_and_archive_time(
    builder: Handler, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    answer = builder(build_request(), LambdaContext(aws_request_id="ok"))
    assert answer["outcome"] == "built"
    out = capsys.readouterr().out
    assert builder_values(out, "BuildsSucceeded") == [1]
    assert builder_values(out, "BuildsFailed") == builder_values(out, "BuildsTimedOut") == []
    [took] = builder_values(out, "BuildTime")
    assert took > 0
    [archive_took] = builder_values(out, "ArchiveQueryTime", archive="sample")
    assert 0 < archive_took <= took
    assert builder_values(out, "ArchiveFailures") == []


def test_a_failed_build_is_counted_and_raised(builder: Handler, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with pytest.raises(BuildFailed, match="build failed: archives down") as raised:
        builder(build_request(archive="down"), LambdaContext(aws_request_id="down"))
    out = capsys.readouterr().out
    assert builder_values(out, "BuildsFailed") == [1]
    assert builder_values(out, "BuildsSucceeded") == []
    assert builder_values(out, "ArchiveFailures", archive="down") == [1]
    assert builder_values(out, "ArchiveFailures") == [1]  # the total an alarm watches
    assert "WLS-1001" not in str(raised.value) and "BBBB" not in str(raised.value)  # no patient, no manifest id


def test_a_timed_out_build_is_counted_and_raised(builder: Handler, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with pytest.raises(BuildFailed, match="build timed-out: archives slow"):
        builder(build_request(archive="slow"), LambdaContext(aws_request_id="slow"))
    out = capsys.readouterr().out
    assert builder_values(out, "BuildsTimedOut") == [1]
    assert builder_values(out, "BuildsFailed") == []
    assert builder_values(out, "ArchiveFailures", archive="slow") == [1]


def test_a_malformed_build_request_is_a_failed_build(builder: Handler, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with pytest.raises(BuildFailed):
        builder({"token": "x"}, LambdaContext(aws_request_id="bad"))
    assert builder_values(capsys.readouterr().out, "BuildsFailed") == [1]


# --- the cleaner ----------------------------------------------------------------------------------------------


@pytest.fixture
def cleanup(metrics_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    bucket = f"cleanup-{uuid.uuid4().hex[:12]}"
    for name, value in {**metrics_env, "MANIFEST_BUCKET": bucket}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield importlib.reload(importlib.import_module("functions.cleanup.app"))


def expired_key() -> str:
    return f"manifests/{new_manifest_id(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))}.xml.gz"


def test_the_cleaner_counts_its_deletions_and_its_run(cleanup: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    for _ in range(3):
        s3.put_object(Bucket=cleanup.store.bucket, Key=expired_key(), Body=b"x")
    capsys.readouterr()
    event = json.loads((EVENTS / "scheduled_cleanup.json").read_text())
    assert cleanup.lambda_handler(event, LambdaContext(aws_request_id="clean"))["deleted"] == 3
    out = capsys.readouterr().out
    assert values(out, "ManifestsDeleted") == [3]
    assert values(out, "ManifestDeletionsFailed") == [0]
    assert values(out, "CleanupRunsCompleted") == [1]
    assert values(out, "CleanupRunsFailed") == []


def test_the_cleaner_counts_deletions_s3_refused(cleanup: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    key = expired_key()
    with Stubber(cleanup.store._s3) as s3:  # S3 answers DeleteObjects with a per-key error
        s3.add_response("list_objects_v2", {"Contents": [{"Key": key}], "IsTruncated": False})
        s3.add_response("delete_objects", {"Errors": [{"Key": key, "Code": "AccessDenied", "Message": "denied"}]})
        capsys.readouterr()
        report = cleanup.lambda_handler({}, LambdaContext(aws_request_id="refused"))
    assert report["failed"] == 1
    out = capsys.readouterr().out
    assert values(out, "ManifestDeletionsFailed") == [1]
    assert values(out, "ManifestsDeleted") == [0]
    assert values(out, "CleanupRunsCompleted") == [1]


def test_a_crashed_cleanup_run_is_counted_and_raised(cleanup: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with Stubber(cleanup.store._s3) as s3:
        s3.add_client_error("list_objects_v2", "AccessDenied", http_status_code=403)
        capsys.readouterr()
        with pytest.raises(Exception, match="AccessDenied"):
            cleanup.lambda_handler({}, LambdaContext(aws_request_id="crash"))
    out = capsys.readouterr().out
    assert values(out, "CleanupRunsFailed") == [1]
    assert values(out, "CleanupRunsCompleted") == []


def cold_starts(handler: Handler, event: dict[str, Any], capsys: pytest.CaptureFixture[str], **names: str) -> Any:
    """ColdStart metrics of two invocations in a new execution environment (the flag is process-wide)."""
    context = LambdaContext(aws_request_id="cold", function_name="stack-function")
    reset_cold_start_flag()
    capsys.readouterr()
    handler(event, context)
    handler(event, context)
    return [(v, d) for n, v, d in emitted(capsys.readouterr().out, **names) if n == "ColdStart"]


def test_the_builder_counts_its_cold_starts(builder: Handler, capsys: pytest.CaptureFixture[str]) -> None:
    cold = cold_starts(builder, build_request(), capsys, **BUILDER_NAMES)
    assert cold == [(1.0, {"function_name": "stack-function", "service": BUILDER_NAMES["service"]})]


def test_the_cleaner_counts_its_cold_starts(cleanup: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    cold = cold_starts(cleanup.lambda_handler, {}, capsys)
    assert cold == [(1.0, {"function_name": "stack-function", "service": SERVICE})]


# --- the API function ---------------------------------------------------------------------------------------------


def test_a_refusal_code_stays_on_the_refusal_metric(
    function_modules: dict[str, Any],
    service_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """RequestsRefused carries the refusal's `code`; a metric recorded later in the same invocation does not."""
    api = function_modules["api"]
    for name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):  # as Lambda sets them, always
        monkeypatch.setenv(name, service_env[name])
    event = json.loads((EVENTS / "get_weasis.json").read_text())
    event.update(routeKey="GET /no-such-route", rawPath="/no-such-route")
    event["requestContext"]["http"]["path"] = "/no-such-route"

    @api.metrics.log_metrics
    def invocation(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        answer: dict[str, Any] = api.app.resolve(event, context)  # 404: refused ("not-found")
        api.metrics.add_metric(name="LaunchesStarted", unit=MetricUnit.Count, value=1)
        return answer

    capsys.readouterr()
    assert invocation(event, LambdaContext(aws_request_id="refused"))["statusCode"] == 404
    out = capsys.readouterr().out
    # The API function is imported with the builder's names (service_env): exact dimension sets compared.
    assert builder_values(out, "RequestsRefused", code="not-found") == [1]
    assert builder_values(out, "LaunchesStarted") == [1]
    assert [d for n, _, d in emitted(out, **BUILDER_NAMES) if n == "LaunchesStarted"] == [
        {"service": BUILDER_NAMES["service"]}
    ]
