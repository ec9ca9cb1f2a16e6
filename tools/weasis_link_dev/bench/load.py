"""Load: 2,000 manifest requests at concurrency 20 over two archives against the local stack, then every manifest
fetched back and validated. The local stack makes one handler call at a time (as one Lambda execution environment
does), so throughput here is one environment's; on AWS, concurrency scales with execution environments."""

from __future__ import annotations

import tempfile
from pathlib import Path

from weasis_link_dev.bench import BenchContext, Figure
from weasis_link_dev.load_test import run_load, start_two_archive_stack


def run(ctx: BenchContext) -> list[Figure]:
    requests, concurrency = (300, 20) if ctx.quick else (2000, 20)
    stack = start_two_archive_stack(Path(tempfile.mkdtemp(prefix="bench-load-")))
    try:
        r = run_load(stack, requests, concurrency)
    finally:
        stack.stop()
    distinct = len(set(r.manifest_urls))
    ok = not r.errors and not r.invalid and distinct == requests
    detail = (
        f"{requests:,} requests at concurrency {concurrency}, two archives; {len(r.errors)} errors, "
        f"{distinct:,} distinct manifests, {len(r.invalid)} invalid"
    )
    return [
        Figure(
            "Load: throughput (one execution environment)", r.throughput, "req/s", "0 errors, all valid", ok, detail
        ),
        Figure("Load: latency p50", r.percentile(50) * 1000, "ms", "", None, "queueing included (concurrency 20)"),
        Figure("Load: latency p95", r.percentile(95) * 1000, "ms"),
        Figure("Load: latency p99", r.percentile(99) * 1000, "ms"),
    ]
