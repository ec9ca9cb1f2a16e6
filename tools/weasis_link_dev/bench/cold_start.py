"""Cold start: a fresh process that imports the API handler and serves its first request (embedded archive, S3 on
moto's server, JWKS fetched from a local endpoint), against `python -c "import boto3; boto3.client('s3')"`, in
the same run.

Both run the way Lambda runs them: `python -S` (no site-packages) with only the function's directory, the shared
layer (its requirements.txt installed for this machine's architecture, plus the weasis_link package) and boto3 (the
runtime's copy) on sys.path — not the development virtualenv with its editable install and test packages."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from weasis_link_dev.bench import BenchContext, Figure, interleaved_medians
from weasis_link_dev.dev_keys import REPO_ROOT, JwksServer, SigningKey, access_token_claims
from weasis_link_dev.local_stack import create_audit_bus, create_bucket, moto_s3, service_environment

EVENT = REPO_ROOT / "events" / "get_manifests_by_study.json"
LAYER = REPO_ROOT / "layers" / "shared"
FUNCTION = REPO_ROOT / "functions" / "api"
FIRST_REQUEST = r"""
import json, os, sys, time
from app import lambda_handler
class Context:
    function_name = "bench"; memory_limit_in_mb = 512; aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    def get_remaining_time_in_millis(self): return 29000
event = json.loads(open(os.environ["BENCH_EVENT"]).read())
event["headers"]["authorization"] = "Bearer " + os.environ["BENCH_TOKEN"]
response = lambda_handler(event, Context())
assert response["statusCode"] == 200, response
names = ("numpy", "PIL", "pydicom", "pynetdicom", "pg8000", "pymysql", "sqlalchemy")
heavy = sorted(m for m in names if m in sys.modules)
print(json.dumps({"heavy": heavy}), file=sys.stderr)
"""
BASELINE = "import boto3; boto3.client('s3')"


def bundle() -> tuple[Path, Path]:
    """(layer site, runtime site): the layer's requirements and package, and boto3 as the runtime provides it.
    Built once per requirements file into .cache/bench-bundle."""
    requirements = (LAYER / "requirements.txt").read_bytes()
    key = hashlib.sha256(requirements + sys.version.encode()).hexdigest()[:16]
    root = REPO_ROOT / ".cache" / "bench-bundle" / key
    layer, runtime = root / "layer", root / "runtime"
    if not (root / "complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
        subprocess.run([*pip, "--target", str(layer), "-r", str(LAYER / "requirements.txt")], check=True)
        subprocess.run([*pip, "--target", str(runtime), "boto3"], check=True)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(root)], check=True)  # Lambda ships .pyc
        (root / "complete").touch()
    # The project's own package is copied fresh each run (it changes while the requirements do not).
    package = layer / "weasis_link"
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(LAYER / "weasis_link", package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package), str(FUNCTION)], check=True)
    return layer, runtime


def run(ctx: BenchContext) -> list[Figure]:
    from weasis_link_dev.orthanc import OrthancServer
    from weasis_link_dev.synthetic_studies import standard_dataset

    layer, runtime = bundle()
    key = SigningKey.generate("bench")
    jwks = JwksServer([key]).start()
    ctx.on_close(jwks.stop)
    repeat = 3 if ctx.quick else 9
    figures = []
    records = standard_dataset()
    with moto_s3() as endpoint, OrthancServer(datasets=[records]) as pacs:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env |= service_environment(jwks.url, endpoint, {"POWERTOOLS_LOG_LEVEL": "WARNING"})
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")})
        create_bucket(endpoint)
        create_audit_bus(endpoint)  # a deployed function audits its first request too
        env |= {"BENCH_EVENT": str(EVENT), "BENCH_TOKEN": key.sign(access_token_claims())}
        dicomweb = Path(tempfile.mkdtemp(prefix="bench-cold-")) / "dicomweb.yaml"
        dicomweb.write_text(
            json.dumps(
                {
                    "wado": {"url": pacs.wado_url},
                    "connector": {
                        "config": {"pacs": {"type": "DICOM_WEB", "dicom-web-connector": {"url": pacs.dicomweb_url}}}
                    },
                }
            )
        )
        cases = [
            ("embedded SQLite archive (make run's default)", env, EVENT),
            (
                "DICOMweb-only configuration on Orthanc",
                env | {"WEASIS_LINK_CONFIG": str(dicomweb)},
                _event_for(dicomweb.parent, records[0].study_instance_uid),
            ),
        ]
        prefix = f"import sys; sys.path[:0] = {[str(FUNCTION), str(layer), str(runtime)]!r}\n"
        for label, case_env, event in cases:
            heavy: list[str] = []
            case_env = case_env | {"BENCH_EVENT": str(event)}

            def ours(case_env: dict[str, str] = case_env, heavy: list[str] = heavy) -> None:
                done = subprocess.run(
                    [sys.executable, "-S", "-c", prefix + FIRST_REQUEST],
                    env=case_env,
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=FUNCTION,
                )
                heavy[:] = json.loads(done.stderr.strip().splitlines()[-1])["heavy"]

            def baseline(case_env: dict[str, str] = case_env) -> None:
                subprocess.run(
                    [sys.executable, "-S", "-c", prefix + BASELINE], env=case_env, check=True, capture_output=True
                )

            ours_s, base_s = interleaved_medians(ours, baseline, repeat)
            ratio = ours_s / base_s
            figures.append(
                Figure(
                    f"Cold start, {label}: import + first request / boto3 + S3 client",
                    ratio,
                    "x",
                    "≤ 1.5",
                    ratio <= 1.5,
                    f"{ours_s:.3f} s vs {base_s:.3f} s, median of {repeat}, Lambda-like sys.path (function, layer,"
                    f" boto3); heavy modules loaded: {', '.join(heavy) or 'none'}",
                )
            )
    return figures


def _event_for(directory: Path, study_uid: str) -> Path:
    event = json.loads(EVENT.read_text())
    event["rawQueryString"] = f"studyUID={study_uid}"
    event["queryStringParameters"] = {"studyUID": study_uid}
    path = directory / "event.json"
    path.write_text(json.dumps(event))
    return path
