"""What Powertools' Tracer (aws-xray-sdk, patching botocore) would add to a cold start, measured as the CPU time of
fresh interpreters (user + system, so that a busy machine does not skew it): `boto3 + S3 client + Logger + Metrics`
against the same plus `Tracer()`, interleaved, median of 15. The reason template.yaml uses Lambda's own active
tracing (no code in the bundle) rather than the Tracer. docs/deploy.md quotes the result.

    python3.12 tools/measure_tracer_cost.py      # creates a throw-away virtualenv with the pinned Powertools
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

POWERTOOLS = "aws-lambda-powertools==3.37.0"  # the layer's pin (layers/shared/requirements.txt)
BASE = "import boto3; boto3.client('s3'); from aws_lambda_powertools import Logger, Metrics; Logger(); Metrics()"
CASES = {"baseline": BASE, "tracer": BASE + "; from aws_lambda_powertools import Tracer; Tracer()"}


def cpu_ms(python: str, code: str, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([python, "-c", code], env=env, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "-q", POWERTOOLS, "aws-xray-sdk", "boto3"], check=True)
        # As inside Lambda: the Tracer is active (it disables itself outside a function).
        env = {
            **os.environ,
            "AWS_LAMBDA_FUNCTION_NAME": "weasis-link-builder",
            "AWS_REGION": "eu-central-1",
            "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
            "POWERTOOLS_SERVICE_NAME": "weasis-link",
            "POWERTOOLS_METRICS_NAMESPACE": "WeasisLink",
        }
        samples: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(15):
            for name, code in CASES.items():
                samples[name].append(cpu_ms(python, code, env))
    base, tracer = (statistics.median(samples[n]) for n in CASES)
    print(f"baseline (boto3 + S3 client + Logger + Metrics): {base:.0f} ms CPU, median of 15")
    print(f"+ Tracer() (aws-xray-sdk, botocore patched):      {tracer:.0f} ms CPU")
    print(f"the Tracer adds {tracer - base:.0f} ms ({(tracer - base) / base:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
