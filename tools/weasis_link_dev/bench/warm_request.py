"""Warm GET /manifests on the embedded sample archive: p50 of the API handler, in a process of its own, excluding the
S3 PUT (timed with botocore's events around PutObject and subtracted; wall clock and the handler thread's CPU
time, steadier on a shared machine), and the compile() calls each warm request
makes (Powertools evaluating string annotations; weasis_link/http/resolver_cache.py does that once, at cold start)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

from weasis_link_dev.bench import BenchContext, Figure
from weasis_link_dev.dev_keys import REPO_ROOT, JwksServer, SigningKey, access_token_claims
from weasis_link_dev.local_stack import create_audit_bus, create_bucket, moto_s3, service_environment

EVENT = REPO_ROOT / "events" / "get_manifests_by_study.json"
CHILD = r"""
import json, os, statistics, sys, time
compiles = [0]
counting = [False]
def _audit(event, args):
    if counting[0] and event == "compile":
        compiles[0] += 1
sys.addaudithook(_audit)
from functions.api import app as api
from weasis_link_dev.local_api import LambdaContext
put = [0.0, 0.0]  # wall, CPU of this thread
started = [0.0, 0.0]
def _put_started(**_):
    started[:] = [time.perf_counter(), time.thread_time()]
def _put_done(**_):
    put[0] += time.perf_counter() - started[0]
    put[1] += time.thread_time() - started[1]
events = api.runtime.store._s3.meta.events
events.register("provide-client-params.s3.PutObject", _put_started)
events.register("after-call.s3.PutObject", _put_done)
with open(os.environ["BENCH_EVENT"]) as f:
    template = json.load(f)
template["headers"]["authorization"] = "Bearer " + os.environ["BENCH_TOKEN"]
samples, cpu, whole = [], [], []
for i in range(int(os.environ["BENCH_REPEAT"]) + 20):  # 20 warm-up requests
    event = json.loads(json.dumps(template))
    put[:] = [0.0, 0.0]
    counting[0] = True
    compiles[0] = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    response = api.lambda_handler(event, LambdaContext())
    elapsed = time.perf_counter() - t0 - put[0]
    elapsed_cpu = time.thread_time() - c0 - put[1]
    counting[0] = False
    assert response["statusCode"] == 200, response
    if i >= 20:
        samples.append(elapsed)
        cpu.append(elapsed_cpu)
        whole.append(elapsed + put[0])
print(json.dumps({"p50": statistics.median(samples), "cpu_p50": statistics.median(cpu), "compiles": compiles[0],
                  "whole_p50": statistics.median(whole)}))
"""


def run(ctx: BenchContext) -> list[Figure]:
    key = SigningKey.generate("bench")
    jwks = JwksServer([key]).start()
    ctx.on_close(jwks.stop)
    repeat = 100 if ctx.quick else 400
    results = {}
    with moto_s3() as endpoint:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BENCH_"))}
        env |= service_environment(jwks.url, endpoint, {"POWERTOOLS_LOG_LEVEL": "WARNING"})
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")})
        create_bucket(endpoint)
        # A deployed function audits every request (the bus may exist: moto's servers in one process share state).
        with contextlib.suppress(Exception):
            create_audit_bus(endpoint)
        env |= {"BENCH_EVENT": str(EVENT), "BENCH_TOKEN": key.sign(access_token_claims()), "BENCH_REPEAT": str(repeat)}
        # The audit trail on (PutEvents to moto's bus) and off, in the same run.
        for mode, extra in (("on", {}), ("off", {"AUDIT_EVENT_BUS": ""})):
            done = subprocess.run(
                [sys.executable, "-c", CHILD],
                env=env | extra,
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO_ROOT,
            )
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    result, off = results["on"], results["off"]
    return [
        Figure(
            "Warm GET /manifests, embedded archive: handler p50 excluding the S3 PUT",
            result["p50"] * 1000,
            "ms",
            detail=f"median of {repeat} in-process requests after 20 warm-up ones; CPU p50 (the handler's thread)"
            f" {result['cpu_p50'] * 1000:.2f} ms; compile() calls in the last request: {result['compiles']}",
        ),
        Figure(
            "Warm GET /manifests, embedded archive: handler p50 with the S3 PUT, audit trail on / off",
            result["whole_p50"] / off["whole_p50"],
            "x",
            detail=f"{result['whole_p50'] * 1000:.2f} vs {off['whole_p50'] * 1000:.2f} ms (PutEvents and PutObject to"
            f" moto); excluding the PUT {result['p50'] * 1000:.2f} vs {off['p50'] * 1000:.2f} ms; handler thread CPU"
            f" {result['cpu_p50'] * 1000:.2f} vs {off['cpu_p50'] * 1000:.2f} ms",
        ),
    ]
