"""Cold start: a fresh process that imports the API handler and serves its first request (embedded archive, S3 on
moto's server, JWKS fetched from a local endpoint), against `python -c "import boto3; boto3.client('s3')"`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from weasis_link_dev.bench import BenchContext, Figure, interleaved_medians
from weasis_link_dev.dev_keys import JwksServer, SigningKey, access_token_claims
from weasis_link_dev.local_stack import create_bucket, moto_s3, service_environment

EVENT = Path(__file__).resolve().parents[3] / "events" / "get_manifests_by_study.json"
FIRST_REQUEST = r"""
import json, os, sys
from functions.api.app import lambda_handler
from weasis_link_dev.local_api import LambdaContext
event = json.loads(open(os.environ["BENCH_EVENT"]).read())
event["headers"]["authorization"] = "Bearer " + os.environ["BENCH_TOKEN"]
response = lambda_handler(event, LambdaContext(aws_request_id="bench"))
assert response["statusCode"] == 200, response
heavy = sorted(m for m in ("numpy", "PIL", "pydicom", "pynetdicom", "pg8000", "pymysql", "urllib3") if m in sys.modules)
print(json.dumps({"heavy": heavy}), file=sys.stderr)
"""
BASELINE = "import boto3; boto3.client('s3')"


def run(ctx: BenchContext) -> list[Figure]:
    key = SigningKey.generate("bench")
    jwks = JwksServer([key]).start()
    ctx.on_close(jwks.stop)
    with moto_s3() as endpoint:
        env = os.environ | service_environment(jwks.url, endpoint, {"POWERTOOLS_LOG_LEVEL": "WARNING"})
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")})
        create_bucket(endpoint)
        env |= {"BENCH_EVENT": str(EVENT), "BENCH_TOKEN": key.sign(access_token_claims())}
        heavy: list[str] = []

        def ours() -> None:
            done = subprocess.run(
                [sys.executable, "-c", FIRST_REQUEST], env=env, capture_output=True, text=True, check=True
            )
            heavy[:] = json.loads(done.stderr.strip().splitlines()[-1])["heavy"]

        def baseline() -> None:
            subprocess.run([sys.executable, "-c", BASELINE], env=env, check=True, capture_output=True)

        repeat = 3 if ctx.quick else 7
        ours_s, base_s = interleaved_medians(ours, baseline, repeat)
    ratio = ours_s / base_s
    return [
        Figure(
            "Cold start: import + first request / boto3 + S3 client",
            ratio,
            "x",
            "≤ 1.5",
            ratio <= 1.5,
            f"{ours_s:.3f} s vs {base_s:.3f} s, median of {repeat}; heavy modules loaded: {', '.join(heavy) or 'none'}",
        ),
    ]
