"""`make run`: the whole service on 127.0.0.1, no AWS account needed.

Starts a JWKS endpoint with the development signing key, moto's S3 server, and the local API server calling the
real `lambda_handler` (functions/api/app.py) on the embedded sample archive, then prints a ready-to-paste curl and
the weasis:// URI it got back. Tests start it as a subprocess with `--port 0 --ready-file …`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from weasis_link_dev.dev_keys import DEV_AUDIENCE, DEV_ISSUER, DEV_SCOPE, KEY_FILE, JwksServer, SigningKey
from weasis_link_dev.dev_keys import access_token_claims as claims
from weasis_link_dev.local_api import LocalApiServer

BUCKET = "weasis-link-local-manifests"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def service_environment(jwks_url: str, s3_endpoint: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "MANIFEST_BUCKET": BUCKET,
        "OAUTH_ISSUER": DEV_ISSUER,
        "OAUTH_AUDIENCES": DEV_AUDIENCE,
        "OAUTH_JWKS_URL": jwks_url,
        "OAUTH_REQUIRED_SCOPES": DEV_SCOPE,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "POWERTOOLS_SERVICE_NAME": "weasis-link",
        "POWERTOOLS_METRICS_NAMESPACE": "WeasisLink",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
        **(extra or {}),
    }


def create_bucket(endpoint: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=BUCKET)


def sample_request(api_url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{api_url}/manifests?patientID=WLS-1001%5E%5E%5EWEASIS-DEMO",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--config", help="connector YAML (default: functions/api/weasis-link.yaml)")
    parser.add_argument("--key-file", type=Path, default=KEY_FILE, help="development signing key (PEM)")
    parser.add_argument("--ready-file", type=Path, help="write the endpoints as JSON here once serving")
    parser.add_argument("--env", action="append", default=[], help="extra NAME=VALUE for the function")
    parser.add_argument("--quiet", action="store_true", help="no banner, no sample request")
    args = parser.parse_args(argv)

    key = SigningKey.load_or_create(args.key_file)
    jwks = JwksServer([key]).start()
    with moto_s3() as s3_endpoint:
        extra = dict(e.split("=", 1) for e in args.env)
        if args.config:
            extra["WEASIS_LINK_CONFIG"] = str(Path(args.config).resolve())
        os.environ.update(service_environment(jwks.url, s3_endpoint, extra))
        create_bucket(s3_endpoint)
        from functions.api.app import lambda_handler  # reads the environment at import, like a cold start

        api = LocalApiServer(lambda_handler, port=args.port)
        ready = {"api_url": api.url, "s3_endpoint": s3_endpoint, "jwks_url": jwks.url, "bucket": BUCKET}
        if args.ready_file:
            args.ready_file.write_text(json.dumps(ready))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        api.start()
        if not args.quiet:
            _banner(api.url, key)
        stop.wait()
        api.stop()
    jwks.stop()
    return 0


def _banner(api_url: str, key: SigningKey) -> None:
    print(f"\nweasis-link is serving on {api_url} (embedded sample archive, S3 on moto)\n", flush=True)
    print("Try:", flush=True)
    print(f'  curl -H "Authorization: Bearer $(make -s token)" "{api_url}/manifests?studyUID=<uid>"', flush=True)
    print(f'  curl -H "Authorization: Bearer $(make -s token)" "{api_url}/manifests?patientID=WLS-1001"', flush=True)
    try:
        answer = sample_request(api_url, key.sign(claims()))
    except Exception as exc:  # the banner must not kill the stack
        print(f"(sample request failed: {exc})", file=sys.stderr, flush=True)
        return
    print(f"\nSample: {answer['instances']} instances of patient WLS-1001; open in Weasis with:", flush=True)
    print(f"  {answer['weasisUrl']}\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
