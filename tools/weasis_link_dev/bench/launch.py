"""Launch latency (issue #5): GET /weasis over HTTP on the local stack, DICOMweb connector on Orthanc, for a
10-instance and a 5,000-instance study; p50 of at least 20 launches each, and their ratio (goal <= 1.2: the launch
answers while the manifest builds, so its latency must not grow with the study).

Launches of the two studies alternate, so machine noise hits both alike; after each launch the benchmark waits for
its manifest (through the short link, as Weasis does) before the next one, so that a build running in the
background never overlaps a measured launch. The time from the launch to the manifest is reported too.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from weasis_link_dev.bench import BenchContext, Figure
from weasis_link_dev.orthanc import OrthancServer
from weasis_link_dev.pytest_stack import StackHandle, start_stack
from weasis_link_dev.synthetic_studies import large_study
from weasis_link_dev.weasis_client import fetch_manifest, manifest_url_of, read_manifest

SIZES = (10, 5000)
GOAL = 1.2


def _start(ctx: BenchContext) -> tuple[StackHandle, dict[int, str]]:
    datasets = {size: large_study(size, seed="launch") for size in SIZES}
    pacs = OrthancServer(datasets=list(datasets.values()))
    pacs.start()
    ctx.on_close(pacs.stop)
    config = Path(tempfile.mkdtemp(prefix="bench-launch-")) / "weasis-link.yaml"
    config.write_text(
        f"""
wado:
  authentication:
    oauth2: {{url: '{pacs.wado_url}'}}
connector:
  config:
    orthanc:
      type: DICOM_WEB
      dicom-web-connector: {{url: '{pacs.dicomweb_url}'}}
""",
        encoding="utf-8",
    )
    stack = start_stack(config, {"POWERTOOLS_LOG_LEVEL": "WARNING"})
    ctx.on_close(stack.stop)
    return stack, {size: records[0].study_instance_uid for size, records in datasets.items()}


def _launch(stack: StackHandle, token: str, study_uid: str) -> tuple[float, float, int]:
    """(launch seconds, seconds until the manifest could be read, instances in it)."""
    started = time.perf_counter()
    status, headers, _ = stack.get(f"/weasis?studyUID={study_uid}", token)
    launched = time.perf_counter() - started
    if status != 302:
        raise RuntimeError(f"launch answered {status}")
    manifest = fetch_manifest(manifest_url_of(headers["Location"]))
    ready = time.perf_counter() - started
    return launched, ready, sum(len(v.instances) for v in read_manifest(manifest.xml))


def run(ctx: BenchContext) -> list[Figure]:
    stack, studies = _start(ctx)
    token = stack.token(lifetime=7200)
    for size in SIZES:  # warm-up: JWKS fetched, connections and code paths hot
        _launch(stack, token, studies[size])
    repeat = 20 if ctx.quick else 30
    launches: dict[int, list[float]] = {size: [] for size in SIZES}
    ready: dict[int, list[float]] = {size: [] for size in SIZES}
    for _ in range(repeat):
        for size in SIZES:
            launched, until_ready, instances = _launch(stack, token, studies[size])
            if instances != size:
                raise RuntimeError(f"the {size}-instance study's manifest holds {instances} instances")
            launches[size].append(launched)
            ready[size].append(until_ready)
    small, large = (statistics.median(launches[size]) for size in SIZES)
    ratio = large / small
    how = f"p50 of {repeat} launches, GET /weasis over HTTP, DICOMweb on Orthanc, alternating with the other study"
    return [
        Figure("Launch latency p50, 10-instance study", small * 1000, "ms", "", None, how),
        Figure("Launch latency p50, 5,000-instance study", large * 1000, "ms", "", None, how),
        Figure(
            "Launch latency ratio, 5,000 / 10 instances",
            ratio,
            "x",
            f"≤ {GOAL}",
            ratio <= GOAL,
            f"{large * 1000:.1f} ms / {small * 1000:.1f} ms",
        ),
        Figure(
            "Launch to manifest ready p50, 5,000-instance study",
            statistics.median(ready[5000]),
            "s",
            "",
            None,
            f"through the short link as Weasis fetches it (10 instances: {statistics.median(ready[10]):.3f} s)",
        ),
    ]
