"""A bounded load test over HTTP (smaller than `make bench`'s 2,000 × 20): no errors, one distinct, retrievable,
valid manifest per request, both archives answering every time."""

from __future__ import annotations

from pathlib import Path

import pytest

from weasis_link_dev.load_test import run_load, start_two_archive_stack

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)  # 300 requests through one local stack on a shared machine
def test_concurrent_requests_over_two_archives(tmp_path: Path) -> None:
    stack = start_two_archive_stack(tmp_path)
    try:
        result = run_load(stack, requests=300, concurrency=20)
    finally:
        stack.stop()
    assert result.errors == []
    assert len(set(result.manifest_urls)) == 300
    assert result.invalid == []
