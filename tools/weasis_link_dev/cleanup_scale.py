"""Cleanup at scale, shared by the integration test (smaller) and `make bench` (10,000 objects): a bucket on
moto's S3 server holding expired and live manifests mixed, then one run of the cleaner."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import random
import time
from dataclasses import dataclass

from weasis_link.storage import CleanupReport, ManifestStore, new_manifest_id, s3_client


@dataclass
class ScaleResult:
    expired: set[str]
    live: set[str]
    left: set[str]
    report: CleanupReport
    seconds: float


def run_cleanup_at_scale(endpoint: str, bucket: str, total: int, *, seed: int = 7) -> ScaleResult:
    client = s3_client("us-east-1", endpoint)
    client.create_bucket(Bucket=bucket)
    store = ManifestStore(client, bucket)
    now = time.time()
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    expired: set[str] = set()
    live: set[str] = set()
    for i in range(total):
        # Expiries spread from a day ago to ten minutes ahead, shuffled: S3 lists them in key (= expiry) order.
        offset = rng.randint(-86400, 600)
        when = dt.datetime.fromtimestamp(now + offset, tz=dt.UTC)
        (expired if offset <= -1 else live).add(store.key_for(new_manifest_id(when)))
        if i % 97 == 0:
            live.add(store.key_for(new_manifest_id(dt.datetime.fromtimestamp(now + 3600, tz=dt.UTC))))
    keys = list(expired | live)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"\x1f\x8b"), keys))
    started = time.perf_counter()
    report = store.delete_expired(now)
    seconds = time.perf_counter() - started
    left: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        left.update(o["Key"] for o in page.get("Contents", []))
    return ScaleResult(expired, live, left, report, seconds)
