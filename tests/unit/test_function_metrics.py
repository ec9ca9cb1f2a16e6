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
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
from aws_lambda_powertools.metrics.provider.cold_start import reset_cold_start_flag
from botocore.stub import Stubber
from moto import mock_aws

from weasis_link.metrics import BuildFailed
from weasis_link.storage import new_manifest_id
from weasis_link_dev.local_api import LambdaContext

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
NAMESPACE = "WeasisLink/metrics-test"
SERVICE = "metrics-test"
BUCKET = "metrics-test"
REGION = "eu-central-1"


def emitted(stdout: str) -> list[tuple[str, float, dict[str, str]]]:
    """(metric, value, dimensions) for every metric of every EMF line, checked against the EMF structure."""
    found = []
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob: dict[str, Any] = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            for dimension_set in directive["Dimensions"]:
                dimensions = {name: blob[name] for name in dimension_set}
                assert dimensions["service"] == SERVICE
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]  # EMF: a number, or a list of them
                    found += [
                        (metric["Name"], float(v), dimensions) for v in (value if isinstance(value, list) else [value])
                    ]
    return found


def values(stdout: str, name: str, **dimensions: str) -> list[float]:
    wanted = {"service": SERVICE, **dimensions}
    return [v for n, v, d in emitted(stdout) if n == name and d == wanted]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlowPacs:
    """A DICOMweb endpoint that answers nothing for longer than the connector's read timeout."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(1.5)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"[]")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def metrics_env(service_env: dict[str, str]) -> dict[str, str]:
    return {
        **service_env,
        "MANIFEST_BUCKET": BUCKET,
        "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": SERVICE,
        "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
    }


@pytest.fixture(scope="module")
def builder(metrics_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """functions/api/builder.py, cold-started on a configuration with the sample archive, one that refuses
    connections and one slower than its read timeout; S3 on moto."""
    pacs = SlowPacs()
    config = yaml.safe_load((ROOT / "functions/api/weasis-link.yaml").read_text())
    config["connector"]["config"]["down"] = {
        "type": "DICOM_WEB",
        "dicom-web-connector": {"url": f"http://127.0.0.1:{closed_port()}/dicom-web", "retries": 0},
    }
    config["connector"]["config"]["slow"] = {
        "type": "DICOM_WEB",
        "dicom-web-connector": {"url": pacs.url, "read-timeout-seconds": 0.2, "retries": 0},
    }
    path = tmp_path_factory.mktemp("metrics") / "weasis-link.yaml"
    # The sample archive's init script is relative to the bundled file: keep its directory reachable.
    (path.parent / "sample_archive").symlink_to(ROOT / "layers/shared/weasis_link/sample_archive")
    path.write_text(json.dumps(config))
    with pytest.MonkeyPatch.context() as env, mock_aws():
        for name, value in {**metrics_env, "WEASIS_LINK_CONFIG": str(path)}.items():
            env.setenv(name, value)
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield importlib.reload(importlib.import_module("functions.api.builder"))
    pacs.stop()


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
    builder: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    answer = builder.lambda_handler(build_request(), LambdaContext(aws_request_id="ok"))
    assert answer["outcome"] == "built"
    out = capsys.readouterr().out
    assert values(out, "BuildsSucceeded") == [1]
    assert values(out, "BuildsFailed") == values(out, "BuildsTimedOut") == []
    [took] = values(out, "BuildTime")
    assert took > 0
    [archive_took] = values(out, "ArchiveQueryTime", archive="sample")
    assert 0 < archive_took <= took
    assert values(out, "ArchiveFailures") == []


def test_a_failed_build_is_counted_and_raised(builder: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with pytest.raises(BuildFailed, match="build failed: archives down") as raised:
        builder.lambda_handler(build_request(archive="down"), LambdaContext(aws_request_id="down"))
    out = capsys.readouterr().out
    assert values(out, "BuildsFailed") == [1]
    assert values(out, "BuildsSucceeded") == []
    assert values(out, "ArchiveFailures", archive="down") == [1]
    assert values(out, "ArchiveFailures") == [1]  # the total an alarm watches
    assert "WLS-1001" not in str(raised.value) and "BBBB" not in str(raised.value)  # no patient, no manifest id


def test_a_timed_out_build_is_counted_and_raised(builder: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with pytest.raises(BuildFailed, match="build timed-out: archives slow"):
        builder.lambda_handler(build_request(archive="slow"), LambdaContext(aws_request_id="slow"))
    out = capsys.readouterr().out
    assert values(out, "BuildsTimedOut") == [1]
    assert values(out, "BuildsFailed") == []
    assert values(out, "ArchiveFailures", archive="slow") == [1]


def test_a_malformed_build_request_is_a_failed_build(builder: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with pytest.raises(BuildFailed):
        builder.lambda_handler({"token": "x"}, LambdaContext(aws_request_id="bad"))
    assert values(capsys.readouterr().out, "BuildsFailed") == [1]


# --- the cleaner ----------------------------------------------------------------------------------------------


@pytest.fixture
def cleanup(metrics_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    bucket = f"cleanup-{uuid.uuid4().hex[:12]}"  # moto's state may be shared with the builder's fixture
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


@pytest.mark.parametrize("name", ["builder", "cleanup"])
def test_cold_starts_are_counted_per_function(name: str, request: pytest.FixtureRequest) -> None:
    module: ModuleType = request.getfixturevalue(name)
    capsys: pytest.CaptureFixture[str] = request.getfixturevalue("capsys")
    event = build_request() if name == "builder" else {}
    context = LambdaContext(aws_request_id="cold", function_name=f"{SERVICE}-{name}")
    reset_cold_start_flag()  # a new execution environment (the flag is process-wide in Powertools)
    capsys.readouterr()
    module.lambda_handler(event, context)
    module.lambda_handler(event, context)
    cold = [(v, d) for n, v, d in emitted(capsys.readouterr().out) if n == "ColdStart"]
    assert cold == [(1.0, {"function_name": f"{SERVICE}-{name}", "service": SERVICE})]
