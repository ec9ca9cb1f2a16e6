"""Settings that had no test proving their effect, over HTTP on the local stack, each compared with the default:

- `TOKEN_EXPIRY_MARGIN_SECONDS`: the caller's token is reported as expiring (JSON warning, WARN <Message> in the
  manifest) when it dies within the margin of the manifest's own expiry, and only then;
- `manifest.require-only-sop-instance-uid`: the arcQuery tells Weasis to ask the archive by SOPInstanceUID alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from weasis_link_dev.pytest_stack import StackFactory, StackHandle
from weasis_link_dev.weasis_client import fetch_manifest, read_manifest, validate

pytestmark = pytest.mark.e2e
BUNDLED = Path(__file__).resolve().parents[2] / "functions" / "api" / "weasis-link.yaml"
TTL = 300  # MANIFEST_TTL_SECONDS, default
MARGIN = 600  # TOKEN_EXPIRY_MARGIN_SECONDS of the configured stack (default 60)


@pytest.fixture(scope="module")
def configured(local_stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> StackHandle:
    config = yaml.safe_load(BUNDLED.read_text())
    archives = config["connector"]["config"]
    archives["sample-by-sop"] = archives["sample"] | {"manifest": {"require-only-sop-instance-uid": True}}
    path = tmp_path_factory.mktemp("settings") / "weasis-link.yaml"
    path.write_text(yaml.safe_dump(config))
    return local_stack_factory(config=path, env={"TOKEN_EXPIRY_MARGIN_SECONDS": str(MARGIN)})


def built(stack: StackHandle, query: str, token: str) -> tuple[list[str], bytes]:
    status, _, body = stack.get(f"/manifests?{query}", token)
    assert status == 200, body
    answer = json.loads(body)
    xml = fetch_manifest(answer["manifestUrl"]).xml
    assert validate(xml) == []
    return answer["warnings"], xml


def expiry_messages(xml: bytes) -> list[str]:
    return [v.message["title"] for v in read_manifest(xml) if v.message is not None]


@pytest.mark.parametrize(
    ("lifetime", "warned_by_default", "warned_with_margin"),
    [
        (TTL + 60 + 40, False, True),  # outlives the manifest by 100 s: enough for 60 s, not for 600 s
        (TTL + MARGIN + 100, False, False),  # outlives both margins
        (TTL - 100, True, True),  # dies before the manifest: always reported
    ],
)
def test_token_expiry_margin_decides_which_tokens_are_reported_as_expiring(
    local_stack: StackHandle, configured: StackHandle, lifetime: int, warned_by_default: bool, warned_with_margin: bool
) -> None:
    for stack, warned in ((local_stack, warned_by_default), (configured, warned_with_margin)):
        warnings, xml = built(stack, "patientID=WLS-1001", stack.token(lifetime=lifetime))
        assert bool(warnings) is warned, (stack.api_url, lifetime, warnings)
        assert expiry_messages(xml) == (["Access token expires soon"] if warned else [])
        if warned:
            [warning] = warnings
            assert "expires in" in warning


def test_require_only_sop_instance_uid_reaches_the_arc_query(local_stack: StackHandle, configured: StackHandle) -> None:
    query = "patientID=WLS-1001%5E%5E%5EWEASIS-DEMO"
    _, xml = built(configured, f"{query}&archive=sample-by-sop", configured.token())
    [by_sop] = read_manifest(xml)
    _, xml = built(local_stack, query, local_stack.token())
    [default] = read_manifest(xml)
    assert (by_sop.arc_id, by_sop.attributes.get("requireOnlySOPInstanceUID")) == ("sample-by-sop", "true")
    assert (default.arc_id, default.attributes.get("requireOnlySOPInstanceUID")) == ("sample", "false")
    assert {i.sop_uid for i in by_sop.instances} == {i.sop_uid for i in default.instances}  # the same images
