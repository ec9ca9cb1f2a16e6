"""DICOM_WEB on Orthanc, 1,000- and 5,000-instance studies: the API handler against one raw QIDO-RS GET.

For each study, in one fresh process and interleaved: the real `lambda_handler` in-process for `GET
/manifests?studyUID=…` (JWT validation, QIDO-RS, study tree, manifest, gzip, S3 PUT to moto in another process,
presign) and one raw instance-level QIDO-RS GET of the same study with urllib3, the same fields and headers (what
the connector asks). The ratio of the medians is the figure; the PACS's own time cancels out. The HTTP requests
the handler sends to the PACS are counted below urllib3's connection pool (retries included). Peak memory is
measured in another fresh process: peak RSS during the 5,000-instance request minus the RSS before it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from weasis_link_dev.bench import BenchContext, Figure

RATIO_GOAL = 1.10

CHILD = r"""
import gc, json, os, resource, statistics, sys, time
args = json.loads(sys.argv[1])
from weasis_link_dev.dev_keys import JwksServer, SigningKey, access_token_claims
from weasis_link_dev.local_stack import service_environment
key = SigningKey.generate("bench")
jwks = JwksServer([key]).start()
os.environ.update(service_environment(jwks.url, args["s3"], {"WEASIS_LINK_CONFIG": args["config"]}))
import urllib3
import urllib3.connectionpool
from functions.api.app import lambda_handler
from weasis_link.connectors.dicom_json import INSTANCE_FIELDS, query_string
from weasis_link_dev.local_api import LambdaContext, http_api_event

from weasis_link.connectors.dicomweb import DicomWebConnector
find_seconds = [0.0]
find = DicomWebConnector.find
def timed_find(self, *a, **kw):
    started = time.perf_counter()
    try:
        return find(self, *a, **kw)
    finally:
        find_seconds[0] += time.perf_counter() - started
DicomWebConnector.find = timed_find

sent = [0]
make_request = urllib3.connectionpool.HTTPConnectionPool._make_request
def counting(self, *a, **kw):
    if self.port == args["pacs_port"]:
        sent[0] += 1
    return make_request(self, *a, **kw)
urllib3.connectionpool.HTTPConnectionPool._make_request = counting

token = key.sign(access_token_claims(lifetime=7200))
def handler(uid):
    event = http_api_event("GET", "/manifests?studyUID=" + uid, [("Authorization", "Bearer " + token)], b"")
    before = sent[0]
    response = lambda_handler(event, LambdaContext(deadline=time.monotonic() + 29))
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])["instances"], sent[0] - before

accept = "application/dicom+json, application/json;q=0.9"
http = urllib3.PoolManager(headers={"Accept": accept, "Accept-Encoding": "gzip", "User-Agent": "bench"})
def raw(uid):
    fields = query_string([INSTANCE_FIELDS, ("limit", str(args["page_size"]))])
    response = http.request("GET", args["dicomweb"] + "/studies/" + uid + "/instances?" + fields)
    assert response.status == 200
    return len(response.data)

from weasis_link_dev.bench.memory import current_rss_mb, peak_rss_mb, reset_peak

out = {}
warm = args["studies"][0]
handler(warm["uid"]); raw(warm["uid"])  # imports, connections, JWKS: what a warm container already has
if args["mode"] == "memory":
    big = args["studies"][-1]
    gc.collect()
    reset_peak()
    before = current_rss_mb()
    handler(big["uid"])
    out["peak_mb"] = peak_rss_mb() - before
else:
    for study in args["studies"]:
        raw_s, handler_s, find_s, counts = [], [], [], []
        def one_raw():
            started = time.perf_counter()
            size = raw(study["uid"])
            raw_s.append(time.perf_counter() - started)
            return size
        def one_handler():
            find_seconds[0] = 0.0
            started = time.perf_counter()
            instances, n = handler(study["uid"])
            handler_s.append(time.perf_counter() - started)
            find_s.append(find_seconds[0])
            assert instances == study["instances"], (instances, study)
            counts.append(n)
        for i in range(args["repeat"]):
            # Alternate which goes first, so that neither always finds Orthanc's caches warmed by the other.
            if i % 2:
                one_handler(); size = one_raw()
            else:
                size = one_raw(); one_handler()
        out[study["uid"]] = {"raw": raw_s, "handler": handler_s, "find": find_s, "requests": counts, "json_bytes": size}
jwks.stop()
print(json.dumps(out))
"""


def run(ctx: BenchContext) -> list[Figure]:
    from weasis_link_dev.local_stack import create_audit_bus, moto_s3
    from weasis_link_dev.orthanc import OrthancServer
    from weasis_link_dev.synthetic_studies import large_study

    sizes = (1000, 5000)
    datasets = [large_study(n) for n in sizes]
    pacs = OrthancServer(datasets=datasets)
    pacs.start()
    ctx.on_close(pacs.stop)
    s3 = moto_s3()
    s3_endpoint = s3.__enter__()

    def stop_s3() -> None:
        s3.__exit__(None, None, None)

    ctx.on_close(stop_s3)
    _create_bucket(s3_endpoint)
    create_audit_bus(s3_endpoint)  # the handler audits each manifest, as deployed

    workdir = Path(tempfile.mkdtemp(prefix="weasis-link-bench-qido-"))
    config = workdir / "weasis-link.yaml"
    config.write_text(
        json.dumps(
            {
                "wado": {"authentication": {"oauth2": {"url": pacs.wado_url}}},
                "connector": {
                    "config": {"orthanc": {"type": "DICOM_WEB", "dicom-web-connector": {"url": pacs.dicomweb_url}}}
                },
            }
        )
    )
    studies: list[dict[str, Any]] = [
        {"uid": records[0].study_instance_uid, "instances": len(records)} for records in datasets
    ]
    args: dict[str, Any] = {
        "s3": s3_endpoint,
        "config": str(config),
        "dicomweb": pacs.dicomweb_url,
        "pacs_port": int(pacs.http_url.rsplit(":", 1)[1]),
        "page_size": 10000,  # the connector's default
        "studies": studies,
        "repeat": 3 if ctx.quick else 9,
        "mode": "ratio",
    }
    timings = _child(args)
    memory = _child({**args, "mode": "memory"})

    figures = []
    for size, study in zip(sizes, studies, strict=True):
        t = timings[study["uid"]]
        raw, handler = statistics.median(t["raw"]), statistics.median(t["handler"])
        # Per run: the handler's time outside the connector (auth, manifest, gzip, S3, response).
        rest = statistics.median(h - f for h, f in zip(t["handler"], t["find"], strict=True))
        ratio = handler / raw
        figures.append(
            Figure(
                f"QIDO-RS handler ÷ raw instance GET, {size:,} instances",
                ratio,
                "x",
                f"≤ {RATIO_GOAL:.2f}",
                ratio <= RATIO_GOAL,
                f"median of {len(t['raw'])} alternated runs: handler {handler:.3f} s (of which {rest * 1000:.0f} ms "
                f"outside the connector), raw GET {raw:.3f} s ({t['json_bytes'] / 1e6:.1f} MB of JSON)",
            )
        )
    worst = max(n for study in studies for n in timings[study["uid"]]["requests"])
    figures.append(
        Figure(
            "PACS requests per manifest (one study)",
            worst,
            "",
            "≤ 2 (1 + studies)",
            worst <= 2,
            "HTTP requests the handler sent to Orthanc, counted below urllib3's pool (retries included); worst run",
        )
    )
    figures.append(
        Figure(
            "5,000-instance manifest via DICOMweb: peak memory",
            memory["peak_mb"],
            "MB",
            "",
            None,
            "peak RSS during the request minus RSS before it (warm process; QIDO JSON, study tree, manifest)",
        )
    )
    return figures


def _child(args: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, check=False, timeout=900
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark process failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _create_bucket(endpoint: str) -> None:
    import boto3

    from weasis_link_dev.local_stack import BUCKET, REGION

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto accepts any credentials
    ).create_bucket(Bucket=BUCKET)
