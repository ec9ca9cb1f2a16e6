"""Cold start against another revision: `python -m weasis_link_dev.bench.cold_start_ab [REF] [--repeat N]`.

The same first request as the cold-start benchmark (embedded archive, S3 on moto's server, JWKS on loopback), run
alternately with this work tree's `weasis_link` + `functions/api` and with REF's (default `main`, taken with
`git archive`), on the same layer dependencies: the ratio says whether a change made cold start worse, without the
machine-load noise that separates two runs of `make bench`. Not part of `make bench` (it needs a git revision).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from weasis_link_dev.bench import interleaved_medians
from weasis_link_dev.bench.cold_start import EVENT, Case, built_bundle, runnable_bundle, spawn
from weasis_link_dev.dev_keys import REPO_ROOT, JwksServer, SigningKey, access_token_claims
from weasis_link_dev.local_stack import create_audit_bus, create_bucket, moto_s3, service_environment

PARTS = ("layers/shared/weasis_link", "functions/api")


def tree_at(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", ref, *PARTS], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def sys_path(root: Path, into: Path, layer: Path, runtime: Path) -> list[str]:
    """Function directory, package, layer dependencies, boto3: as Lambda puts them on sys.path."""
    shutil.copytree(
        root / "layers/shared/weasis_link", into / "weasis_link", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(root / "functions/api", into / "function", ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(str(into), quiet=1)
    return [str(into / "function"), str(into), str(layer), str(runtime)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ref", nargs="?", default="main")
    parser.add_argument("--repeat", type=int, default=25)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-cold-ab-"))
    _, layer, runtime, _ = runnable_bundle(built_bundle(), work / "bundle")  # the layer's dependencies, boto3
    paths = {
        "this tree": sys_path(REPO_ROOT, work / "this", layer, runtime),
        args.ref: sys_path(tree_at(args.ref, work / "ref-tree"), work / "ref", layer, runtime),
    }
    key = SigningKey.generate("bench-ab")
    jwks = JwksServer([key]).start()
    try:
        with moto_s3() as endpoint:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
            env |= service_environment(jwks.url, endpoint, {"POWERTOOLS_LOG_LEVEL": "WARNING"})
            os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")})
            create_bucket(endpoint)
            create_audit_bus(endpoint)  # both trees audit their first request, as deployed
            env |= {"BENCH_EVENT": str(EVENT), "BENCH_TOKEN": key.sign(access_token_claims())}

            def first_request(name: str) -> None:
                path = [Path(p) for p in paths[name]]
                config = {"WEASIS_LINK_CONFIG": str(path[0] / "weasis-link.yaml"), "BENCH_MODE": "handler"}
                spawn(Case(name, name, None, env | config, path), path[0])

            ours, theirs = interleaved_medians(
                lambda: first_request("this tree"), lambda: first_request(args.ref), args.repeat
            )
    finally:
        jwks.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {"this_tree_s": round(ours, 3), f"{args.ref}_s": round(theirs, 3), "ratio": round(ours / theirs, 3)}
            | {"repeat": args.repeat}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
