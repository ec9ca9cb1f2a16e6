"""tools/weasis_link_dev/smoke.py, the pipeline's end-to-end check of a deployed stack, run here against the local
stack: it passes on a working service and fails, naming the check, when the token is refused or the study absent."""

from __future__ import annotations

import pytest

from weasis_link_dev import smoke
from weasis_link_dev.pytest_stack import StackHandle

pytestmark = pytest.mark.e2e
QUERY = "patientID=WLS-1001"


def test_the_smoke_check_passes_against_a_working_stack(
    local_stack: StackHandle, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = local_stack.token()
    monkeypatch.setenv(smoke.TOKEN_VARIABLE, token)
    assert smoke.main(["--api-url", local_stack.api_url, "--query", QUERY, "--min-instances", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok    ") == 4
    assert token not in out and "X-Amz-Signature" not in out and "/manifests/" not in out  # nothing secret printed


def test_the_smoke_check_fails_on_a_refused_token(local_stack: StackHandle) -> None:
    with pytest.raises(smoke.SmokeFailure, match="GET /manifests: HTTP 401"):
        smoke.run(local_stack.api_url, QUERY, local_stack.token(audience="someone-else"))


def test_the_smoke_check_fails_when_the_test_study_is_missing(local_stack: StackHandle) -> None:
    with pytest.raises(smoke.SmokeFailure, match="expected at least 1"):
        smoke.run(local_stack.api_url, "patientID=NOBODY-0000", local_stack.token())


def test_the_token_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(smoke.TOKEN_VARIABLE, raising=False)
    assert smoke.main(["--api-url", "http://127.0.0.1:9", "--query", QUERY]) == 2
