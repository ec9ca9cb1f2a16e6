"""What the API function does to shorten its cold start: garbage collection paused during init and the heap frozen
after it (weasis_link.init_phase)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

GC_STATE = "import gc, json; print(json.dumps([gc.isenabled(), gc.get_freeze_count()]))"


def python(code: str, env: dict[str, str]) -> list[object]:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    answer: list[object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_importing_init_phase_pauses_the_collector() -> None:
    enabled, _ = python("import weasis_link.init_phase; " + GC_STATE, dict(os.environ))
    assert enabled is False


def test_the_api_function_ends_init_with_a_frozen_heap_and_the_collector_on(service_env: dict[str, str]) -> None:
    enabled, frozen = python("import functions.api.app; " + GC_STATE, {**os.environ, **service_env})
    assert enabled is True
    assert isinstance(frozen, int) and frozen > 100_000  # everything init created: Powertools, pydantic, boto3
