"""Cleanup at scale: 10,000 manifests, expired and live mixed, on moto's S3 server; one run of the cleaner."""

from __future__ import annotations

import os

from weasis_link_dev.bench import BenchContext, Figure
from weasis_link_dev.cleanup_scale import run_cleanup_at_scale
from weasis_link_dev.local_stack import moto_s3


def run(ctx: BenchContext) -> list[Figure]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    total = 2000 if ctx.quick else 10_000
    with moto_s3() as endpoint:
        r = run_cleanup_at_scale(endpoint, "bench-cleanup", total)
    correct = r.left == r.live and r.report.deleted == len(r.expired)
    return [
        Figure(
            f"Cleanup of {len(r.expired) + len(r.live):,} objects ({len(r.expired):,} expired)",
            r.seconds,
            "s",
            "every expired one deleted, no live one",
            correct,
            f"{r.report.deleted:,} deleted in {-(-r.report.deleted // 1000)} batches, {r.report.scanned:,} listed, "
            f"{len(r.left):,} live left (moto server on 127.0.0.1)",
        ),
    ]
