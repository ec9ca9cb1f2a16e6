"""End-to-end check of a deployed stack, as the pipeline runs it against staging (docs/pipeline/github-actions.yml):
what a portal and Weasis do, over HTTPS, with a real token of the hospital's identity provider.

    WEASIS_LINK_SMOKE_TOKEN=<access token> python -m weasis_link_dev.smoke --api-url https://viewer-staging.example \\
        --query 'patientID=TEST-0001&issuerOfPatientID=TEST'

Checks: a request without a token is refused (401, WWW-Authenticate: Bearer); GET /manifests answers a presigned URL
and a short link; both serve a manifest that validates against the Weasis XSD and lists at least --min-instances
instances. The token comes from the environment only (never the command line, never printed); no URL is printed
either (a presigned URL or short link is a capability). Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from weasis_link_dev.weasis_client import fetch_manifest, read_manifest, validate

TOKEN_VARIABLE = "WEASIS_LINK_SMOKE_TOKEN"  # noqa: S105 - the name of the variable, not a token


class SmokeFailure(Exception):
    pass


def _get(url: str, token: str | None, timeout: float) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers.items()), exc.read()


def _check_manifest(name: str, url: str, min_instances: int, timeout: float) -> int:
    fetched = fetch_manifest(url, timeout=timeout)
    problems = validate(fetched.xml)
    if problems:
        raise SmokeFailure(f"{name}: the manifest does not validate against the Weasis XSD: {problems[:3]}")
    instances = sum(len(archive.instances) for archive in read_manifest(fetched.xml))
    if instances < min_instances:
        raise SmokeFailure(f"{name}: {instances} instances, expected at least {min_instances}")
    return instances


def run(api_url: str, query: str, token: str, min_instances: int = 1, timeout: float = 60) -> list[str]:
    """The checks, in order; the first failure raises SmokeFailure. Returns one line per passed check."""
    base = api_url.rstrip("/")
    passed = []
    status, headers, _ = _get(f"{base}/manifests?{query}", None, timeout)
    challenge = {k.lower(): v for k, v in headers.items()}.get("www-authenticate", "")
    if status != 401 or not challenge.startswith("Bearer"):
        raise SmokeFailure(f"without a token: HTTP {status} (expected 401 with WWW-Authenticate: Bearer)")
    passed.append("without a token: 401")
    status, _, body = _get(f"{base}/manifests?{query}", token, timeout)
    if status != 200:
        detail = json.loads(body).get("detail", "") if body.startswith(b"{") else ""
        raise SmokeFailure(f"GET /manifests: HTTP {status} {detail}".rstrip())
    answer = json.loads(body)
    for field in ("manifestUrl", "manifestLink", "weasisUrl"):
        if not str(answer.get(field, "")).startswith(("https://", "http://", "weasis://")):
            raise SmokeFailure(f"GET /manifests: no {field} in the answer")
    passed.append("GET /manifests: 200 with manifestUrl, manifestLink, weasisUrl")
    for name in ("manifestUrl", "manifestLink"):
        instances = _check_manifest(name, answer[name], min_instances, timeout)
        passed.append(f"{name}: a valid manifest of {instances} instances")
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", required=True, help="base URL of the deployed API (custom domain or ApiUrl)")
    parser.add_argument("--query", required=True, help="criteria of a test study, e.g. patientID=TEST-0001")
    parser.add_argument("--min-instances", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_VARIABLE)
    if not token:
        print(f"smoke: set {TOKEN_VARIABLE} to an access token", file=sys.stderr)
        return 2
    try:
        for line in run(args.api_url, args.query, token, args.min_instances, args.timeout):
            print(f"ok    {line}")
    except (SmokeFailure, OSError) as exc:
        print(f"FAIL  {exc}", file=sys.stderr)
        return 1
    print("smoke: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
