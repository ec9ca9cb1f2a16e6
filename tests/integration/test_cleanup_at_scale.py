"""The cleaner against moto's S3 server: expired and live manifests mixed, more than one DeleteObjects batch."""

from __future__ import annotations

import pytest

from weasis_link_dev.cleanup_scale import run_cleanup_at_scale
from weasis_link_dev.local_stack import moto_s3

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)  # 2,500 objects written to moto one by one first
def test_every_expired_manifest_goes_and_no_live_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    with moto_s3() as endpoint:
        result = run_cleanup_at_scale(endpoint, "cleanup-scale", 2500)
    assert len(result.expired) > 1000  # several delete batches
    assert result.left == result.live
    assert result.report.deleted == len(result.expired)
    assert result.report.failed == 0
    # Listing stops at the first live manifest: the live tail is never read.
    assert result.report.scanned <= len(result.expired) + 1
