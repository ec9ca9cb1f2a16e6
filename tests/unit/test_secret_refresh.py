"""Secrets with a maximum age (secret_refresh.py): a password rotated in SSM reaches the manifests of a warm
environment once the values in use are SECRETS_MAX_AGE_SECONDS old, not before; a failed refresh keeps the
working values; a configuration without secret-store references is never re-read. SSM and S3 on moto."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from weasis_link.auth import Caller
from weasis_link.config import load_config
from weasis_link.criteria import criteria_from_pairs
from weasis_link.runtime import Runtime, build_runtime
from weasis_link.secret_references import resolve_reference
from weasis_link.secret_refresh import ConfigRefresher
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, s3_client
from weasis_link_dev.weasis_client import read_manifest, request_headers

ROOT = Path(__file__).resolve().parents[2]
PARAMETER = "/weasis/wado-password"
CALLER = Caller(token="t", subject="alice", scopes=frozenset(), expires_at=2_000_000_000, claims={})


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def config_file(tmp_path: Path, password: str) -> Path:
    """The bundled sample archive, with WADO basic authentication whose password is `password`."""
    config = yaml.safe_load((ROOT / "functions/api/weasis-link.yaml").read_text())
    config["wado"] = {
        "authentication": {"basic": {"url": "https://pacs/wado", "login": "viewer", "password": password}}
    }
    path = tmp_path / "weasis-link.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def wado_password(runtime: Runtime) -> str:
    """The password Weasis would send, read from a manifest the service builds."""
    body = runtime.service.build(criteria_from_pairs([("patientID", "WLS-1001")]), CALLER, 10).body_gzip
    [view, *_] = read_manifest(gzip.decompress(body))
    scheme, _, credentials = request_headers(view)["Authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(credentials).decode().partition(":")[2]


def make_runtime(path: Path, now: list[float]) -> tuple[Runtime, ConfigRefresher]:
    """The runtime a function builds at cold start, and a refresher like its own on a clock the test moves."""
    settings = ServiceSettings.model_validate(
        {
            "manifest_bucket": "bucket",
            "oauth_issuer": "i",
            "oauth_audiences": ["a"],
            "oauth_jwks_url": "https://i/j",
            "config_file": str(path),
        }
    )
    store = ManifestStore(s3_client("eu-central-1"), "bucket")
    runtime = build_runtime(ROOT / "functions/api", settings, store=store, inline_builds=True)
    assert runtime.refresher is not None
    refresher = ConfigRefresher(
        lambda: load_config(path, resolve_secret=resolve_reference),
        runtime.service.reconfigure,
        settings.secrets_max_age_seconds,
        enabled=runtime.refresher.enabled,  # the cold start's verdict: does the file use a secret store?
        clock=lambda: now[0],
    )
    return runtime, refresher


def test_a_rotated_password_is_used_once_the_values_reach_their_maximum_age(aws: None, tmp_path: Path) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=PARAMETER, Value="first", Type="SecureString")
    now = [0.0]
    runtime, refresher = make_runtime(config_file(tmp_path, f"ssm:{PARAMETER}"), now)
    assert refresher.enabled
    assert wado_password(runtime) == "first"
    ssm.put_parameter(Name=PARAMETER, Value="second", Type="SecureString", Overwrite=True)  # rotation
    now[0] = 899.0  # SECRETS_MAX_AGE_SECONDS defaults to 900
    assert refresher.refresh_if_stale() is False
    assert wado_password(runtime) == "first"
    now[0] = 900.0
    assert refresher.refresh_if_stale() is True
    assert wado_password(runtime) == "second"
    assert refresher.refresh_if_stale() is False  # fresh again for another 900 s


def test_a_failed_refresh_keeps_the_working_values_and_retries_a_minute_later(aws: None, tmp_path: Path) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=PARAMETER, Value="first", Type="SecureString")
    now = [0.0]
    runtime, refresher = make_runtime(config_file(tmp_path, f"ssm:{PARAMETER}"), now)
    ssm.delete_parameter(Name=PARAMETER)
    now[0] = 900.0
    assert refresher.refresh_if_stale() is False
    assert wado_password(runtime) == "first"
    ssm.put_parameter(Name=PARAMETER, Value="third", Type="SecureString")
    now[0] = 959.0
    assert refresher.refresh_if_stale() is False  # not retried before RETRY_AFTER_FAILURE_SECONDS
    now[0] = 960.0
    assert refresher.refresh_if_stale() is True
    assert wado_password(runtime) == "third"


def test_a_configuration_without_secret_store_references_is_never_re_read(aws: None, tmp_path: Path) -> None:
    now = [0.0]
    runtime, refresher = make_runtime(config_file(tmp_path, "plain"), now)
    assert not refresher.enabled
    now[0] = 1e9
    assert refresher.refresh_if_stale() is False
    assert refresher.refreshes == 0
    assert wado_password(runtime) == "plain"


@pytest.mark.parametrize(("value", "valid"), [("60", True), ("86400", True), ("59", False), ("86401", False)])
def test_the_maximum_age_setting(value: str, valid: bool) -> None:
    env = {
        "MANIFEST_BUCKET": "bucket",
        "OAUTH_ISSUER": "i",
        "OAUTH_AUDIENCES": "a",
        "OAUTH_JWKS_URL": "https://i/j",
        "SECRETS_MAX_AGE_SECONDS": value,
    }
    if valid:
        assert ServiceSettings.from_environment(env).secrets_max_age_seconds == int(value)
    else:
        with pytest.raises(Exception, match="SECRETS_MAX_AGE_SECONDS"):
            ServiceSettings.from_environment(env)
