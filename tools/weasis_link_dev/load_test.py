"""A bounded load test against the local stack: N manifest requests at concurrency C over two archives, then every
manifest fetched back and validated. Shared by tests/e2e/test_load.py (smaller) and `make bench` (2,000 × 20)."""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from weasis_link_dev.pytest_stack import StackHandle, start_stack
from weasis_link_dev.weasis_client import fetch_manifest, read_manifest, validate

BUNDLED = Path(__file__).resolve().parents[2] / "functions" / "api" / "weasis-link.yaml"
QUERIES = [
    "patientID=WLS-1001",
    "patientID=WLS-1003%5E%5E%5ECLINIC-B",
    "accessionNumber=ACC-2024-0500",
    "patientID=WLS-1002&modalitiesInStudy=US",
    "patientID=WLS-100*&mostRecentResults=1",
]


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    seconds: float
    latencies: list[float]
    errors: list[str] = field(default_factory=list)
    manifest_urls: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(p) - 1]


def two_archive_config(directory: Path) -> Path:
    """The embedded sample archive twice, as two connectors: every request queries both concurrently (and each
    instance is listed once, by the first). Wildcards opted in, so that a wildcard query is part of the load."""
    config = yaml.safe_load(BUNDLED.read_text())
    sample = config["connector"]["config"]["sample"]
    sample["search-criteria"] = {"wildcards": ["PATIENT_ID"], "wildcard-max-patients": 10}
    config["connector"] = {
        "default": ["sample", "sample-mirror"],
        "config": {"sample": sample, "sample-mirror": sample},
    }
    path = directory / "two-archives.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def run_load(stack: StackHandle, requests: int, concurrency: int) -> LoadResult:
    token = stack.token(lifetime=7200)

    def one(i: int) -> tuple[float, str | None, str | None]:
        started = time.perf_counter()
        status, _, body = stack.get(f"/manifests?{QUERIES[i % len(QUERIES)]}", token)
        elapsed = time.perf_counter() - started
        if status != 200:
            return elapsed, None, f"request {i}: HTTP {status} {body[:200]!r}"
        answer = json.loads(body)
        if answer["instances"] == 0 or len(answer["failedArchives"]) != 0:
            problem = f"request {i}: {answer['instances']} instances, {answer['failedArchives']}"
            return elapsed, answer["manifestUrl"], problem
        return elapsed, answer["manifestUrl"], None

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(one, range(requests)))
    result = LoadResult(requests, concurrency, time.perf_counter() - started, [o[0] for o in outcomes])
    result.errors = [o[2] for o in outcomes if o[2]]
    result.manifest_urls = [o[1] for o in outcomes if o[1]]

    def check(url: str) -> str | None:
        xml = fetch_manifest(url).xml
        views = read_manifest(xml)
        # Both archives answered the same instances: one arcQuery lists them (cross-archive duplicates once).
        if validate(xml) or len(views) != 1 or not all(v.instances for v in views):
            return url
        return None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        result.invalid = [u for u in pool.map(check, result.manifest_urls) if u]
    return result


def start_two_archive_stack(directory: Path) -> StackHandle:
    return start_stack(two_archive_config(directory), {"POWERTOOLS_LOG_LEVEL": "WARNING"})
