"""`make run`: the whole service on 127.0.0.1, no AWS account needed.

Starts a JWKS endpoint with the development signing key, moto's S3 server, and the local API server calling the
real `lambda_handler` (functions/api/app.py) on the embedded sample archive, then prints a ready-to-paste curl and
the weasis:// URI it got back. Tests start it as a subprocess with `--port 0 --ready-file …`.
`--archive orthanc` (`make run ARCHIVE=orthanc`) serves from a local Orthanc instead: see `serve_orthanc`.
`--config FILE` or `WEASIS_LINK_CONFIG=FILE make run` serves from your own configuration (your PACS).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weasis_link_dev.dev_keys import DEV_AUDIENCE, DEV_ISSUER, DEV_SCOPE, KEY_FILE, JwksServer, SigningKey
from weasis_link_dev.dev_keys import access_token_claims as claims
from weasis_link_dev.local_api import LocalApiServer
from weasis_link_dev.loopback_http import unused_port as free_port  # noqa: F401 - tests import it from here

BUCKET = "weasis-link-local-manifests"
REGION = "us-east-1"
AUDIT_BUS = "weasis-link-local-audit"
AUDIT_QUEUE = "weasis-link-local-audit"
AUDIT_PATTERN = '{"source": ["weasis-link.audit"]}'


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request would drown the stack's log
    # Port 0: the server binds a free port itself. Probing one first and binding it later races with every other
    # process of the machine (and a failed bind in moto's thread would leave start() waiting forever).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def service_environment(
    jwks_url: str, s3_endpoint: str, extra: dict[str, str] | None = None, events_endpoint: str | None = None
) -> dict[str, str]:
    return {
        "AUDIT_EVENT_BUS": AUDIT_BUS,
        "AWS_ENDPOINT_URL_EVENTS": events_endpoint or s3_endpoint,
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
        "PYDANTIC_DISABLE_PLUGINS": "__all__",  # as template.yaml's Globals: no plugin scan at cold start
        **(extra or {}),
    }


def create_bucket(endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)


def create_audit_bus(endpoint: str) -> str:
    """The template's audit resources on moto: the bus, its archive, and a rule copying every event into an SQS
    queue (in place of the template's log group) that `AuditPrinter` reads. Returns the queue URL."""
    import boto3

    # moto's credentials given here, not taken from the environment: `make bench BENCH_ARGS=sql` has none set.
    kwargs: Any = {"endpoint_url": endpoint, "region_name": REGION}
    kwargs |= {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    events, sqs = boto3.client("events", **kwargs), boto3.client("sqs", **kwargs)
    # moto's backends are per process, shared by every moto server in it (`make bench` runs several benchmarks in
    # one process): what an earlier server created is already there, and is the same.
    try:
        bus_arn = events.create_event_bus(Name=AUDIT_BUS)["EventBusArn"]
    except events.exceptions.ResourceAlreadyExistsException:
        bus_arn = events.describe_event_bus(Name=AUDIT_BUS)["Arn"]
    with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
        events.create_archive(
            ArchiveName=AUDIT_BUS, EventSourceArn=bus_arn, RetentionDays=2192, EventPattern=AUDIT_PATTERN
        )
    queue_url = sqs.create_queue(QueueName=AUDIT_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="audit-copy", EventBusName=AUDIT_BUS, EventPattern=AUDIT_PATTERN, State="ENABLED")
    events.put_targets(Rule="audit-copy", EventBusName=AUDIT_BUS, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return str(queue_url)


class AuditPrinter:
    """Prints each AuditEvent the bus delivered as one line of JSON, `{"auditEvent": {...}}`, on stdout."""

    def __init__(self, endpoint: str, queue_url: str) -> None:
        import boto3

        self._sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
        self._queue_url = queue_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-printer", daemon=True)

    def start(self) -> AuditPrinter:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception as exc:  # moto stopping: the stack is shutting down
                if not self._stop.is_set():
                    print(f"(audit printer: {type(exc).__name__})", file=sys.stderr, flush=True)
                return
            for message in answer.get("Messages", []):
                envelope = json.loads(message["Body"])
                # One write per line, newline included: the function's log lines (other threads) cannot cut in.
                sys.stdout.write(json.dumps({"auditEvent": envelope["detail"]}, separators=(",", ":")) + "\n")
                sys.stdout.flush()
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class StopSignal:
    """SIGTERM or SIGINT, awaited on the signal's wakeup fd.

    Not an Event set by a Python handler: the handler runs in the main thread, and when the signal lands while that
    thread holds the Event's lock inside `Event.wait`, `Event.set` waits for that lock forever (seen under load: the
    stack never stopped). The handler here does nothing; the interpreter writes the signal to the socket itself.
    """

    def __init__(self) -> None:
        self._reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._writer = writer
        signal.set_wakeup_fd(writer.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)

    def wait(self) -> int:
        """Block until a stop signal has arrived (one that came before this call counts); its number."""
        received = self._reader.recv(1)[0]
        signal.set_wakeup_fd(-1)
        self._reader.close()
        self._writer.close()
        return received


SERVED_LINE = '{"servedRequest"'


def print_served(event: dict[str, Any], response: dict[str, Any]) -> None:
    """One line of JSON per request served, `{"servedRequest": {...}}`: its request id (which its audit events carry),
    method, route (never the path: a short link's path is a capability), status and problem type. The e2e suite
    matches them with the audit events (weasis_link_dev.audit_expectations)."""
    problem = None
    headers = {k.lower(): str(v) for k, v in (response.get("headers") or {}).items()}
    if headers.get("content-type", "").startswith("application/problem+json") and not response.get("isBase64Encoded"):
        with contextlib.suppress(ValueError, AttributeError):
            problem = json.loads(response.get("body") or "{}").get("type")
    record = {
        "requestId": event["requestContext"]["requestId"],
        "method": event["requestContext"]["http"]["method"],
        "routeKey": event["routeKey"],
        "status": int(response.get("statusCode", 200)),
        "problem": problem if isinstance(problem, str) else None,
    }
    # One write, newline included, like AuditPrinter: no other thread's line can cut in.
    sys.stdout.write(json.dumps({"servedRequest": record}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def sample_request(api_url: str, token: str, query: str = "patientID=WLS-1001%5E%5E%5EWEASIS-DEMO") -> dict[str, Any]:
    request = urllib.request.Request(
        f"{api_url}/manifests?{query}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


@dataclass(frozen=True)
class ServedArchive:
    """What the stack serves from: the banner's description, a sample query, extra ready-file fields."""

    description: str = "embedded sample archive"
    sample_query: str = "patientID=WLS-1001%5E%5E%5EWEASIS-DEMO"
    config: Path | None = None
    ready: dict[str, str] = field(default_factory=dict)


def serve_orthanc(cleanup: contextlib.ExitStack, jwks_url: str, *, bearer: bool) -> ServedArchive:
    """`--archive orthanc`: Orthanc (installed from Debian when missing) on loopback with TCP_NODELAY, seeded with
    the synthetic standard dataset, stopped with the stack; plus a connector configuration for it.

    - default: Orthanc without authentication; the manifest points Weasis at its WADO-URI endpoint.
    - `--orthanc-auth bearer`: Orthanc accepts only tokens of this stack's identity provider (403 otherwise, the
      only refusal Orthanc 1.10's filter can give); QIDO passes the caller's token on and the manifest injects it.
    A second connector, `orthanc-rs` (`archive=orthanc-rs`), serves WADO-RS manifests (Weasis >= 4.7.0).
    """
    from weasis_link_dev.orthanc import BearerTokenAuth, OrthancServer
    from weasis_link_dev.synthetic_studies import standard_dataset

    records = standard_dataset()
    auth = BearerTokenAuth(jwks_url, DEV_ISSUER, DEV_AUDIENCE) if bearer else None
    pacs = cleanup.enter_context(OrthancServer(datasets=[records], bearer=auth))
    qido_auth = "{type: BEARER_PASSTHROUGH}" if bearer else "{type: NONE}"
    wado = f"authentication: {{oauth2: {{url: '{pacs.wado_url}'}}}}" if bearer else f"url: '{pacs.wado_url}'"
    config = pacs.workdir / "weasis-link-orthanc.yaml"
    config.write_text(
        f"""# Written by `make run ARCHIVE=orthanc`: the local Orthanc as a DICOM_WEB archive.
wado:
  {wado}
connector:
  default: [orthanc]
  config:
    orthanc:
      type: DICOM_WEB
      # Orthanc 1.10 refuses Weasis's contentType=application%2Fdicom (it does not decode it) and keeps the last
      # value of a repeated parameter: this lets Weasis <= 4.6 download; 4.7+ ignores the attribute (use orthanc-rs).
      manifest: {{additionnal-parameters: '&contentType=application/dicom'}}
      dicom-web-connector: {{url: '{pacs.dicomweb_url}', authentication: {qido_auth}}}
    orthanc-rs:
      type: DICOM_WEB
      manifest: {{mode: WADO_RS}}
      dicom-web-connector: {{url: '{pacs.dicomweb_url}', authentication: {qido_auth}}}
""",
        encoding="utf-8",
    )
    patients = len({(r.patient_id, r.issuer_of_patient_id) for r in records})
    studies = len({r.study_instance_uid for r in records})
    description = (
        f"Orthanc {pacs.http_url} ({'bearer tokens of this stack' if bearer else 'no authentication'}), "
        f"synthetic standard dataset: {patients} patients, {studies} studies, {len(records)} instances"
    )
    return ServedArchive(description, "patientID=WLK-0001", config, {"orthanc_url": pacs.http_url})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--config", help="connector YAML (default: functions/api/weasis-link.yaml)")
    parser.add_argument("--key-file", type=Path, default=KEY_FILE, help="development signing key (PEM)")
    parser.add_argument("--ready-file", type=Path, help="write the endpoints as JSON here once serving")
    parser.add_argument("--env", action="append", default=[], help="extra NAME=VALUE for the function")
    parser.add_argument("--quiet", action="store_true", help="no banner, no sample request")
    parser.add_argument("--archive", choices=("embedded", "orthanc"), default="embedded", help="what to serve from")
    parser.add_argument("--s3-endpoint", help="use this S3 endpoint instead of moto's server (fault tests)")
    parser.add_argument(
        "--events-endpoint", help="send audit events to this EventBridge endpoint instead of moto's (fault tests)"
    )
    parser.add_argument(
        "--record-requests",
        action="store_true",
        help='print each request served as one line of JSON, `{"servedRequest": {…}}` (route, status, request id)',
    )
    parser.add_argument(
        "--sample-query",
        default=ServedArchive.sample_query,
        help="the banner's sample request with your own configuration (e.g. patientID=<an ID your PACS holds>)",
    )
    parser.add_argument("--orthanc-auth", choices=("none", "bearer"), default="none", help="with --archive orthanc")
    args = parser.parse_args(argv)

    key = SigningKey.load_or_create(args.key_file)
    jwks = JwksServer([key]).start()
    # moto's server plays S3, EventBridge and SQS (the audit trail's copy), on one port.
    with moto_s3() as moto_endpoint, contextlib.ExitStack() as cleanup:
        s3_endpoint = args.s3_endpoint or moto_endpoint
        events_endpoint = args.events_endpoint or moto_endpoint
        extra = dict(e.split("=", 1) for e in args.env)
        served = ServedArchive()
        if args.archive == "orthanc":
            served = serve_orthanc(cleanup, jwks.url, bearer=args.orthanc_auth == "bearer")
            extra["WEASIS_LINK_CONFIG"] = str(served.config)
        # Your own configuration: --config, or WEASIS_LINK_CONFIG=… make run (resolved here: the function would
        # read a relative path from its own code directory).
        own = args.config or (os.environ.get("WEASIS_LINK_CONFIG") if args.archive == "embedded" else None)
        if own:
            extra["WEASIS_LINK_CONFIG"] = str(Path(own).resolve())
            served = ServedArchive(description=f"the archives of {own}", sample_query=args.sample_query)
        os.environ.update(service_environment(jwks.url, s3_endpoint, extra, events_endpoint))
        if not args.s3_endpoint:  # an external endpoint brings its own bucket (or none: fault tests)
            create_bucket(s3_endpoint)
        audit_queue = None
        if not args.events_endpoint:  # an external endpoint brings its own bus (or none: fault tests)
            audit_queue = create_audit_bus(moto_endpoint)
            printer = AuditPrinter(moto_endpoint, audit_queue).start()
            cleanup.callback(printer.stop)
        from functions.api.app import lambda_handler  # reads the environment at import, like a cold start

        api = LocalApiServer(lambda_handler, port=args.port, on_served=print_served if args.record_requests else None)
        ready = {
            "api_url": api.url,
            "s3_endpoint": s3_endpoint,
            "events_endpoint": events_endpoint,
            "audit_queue": audit_queue,
            "jwks_url": jwks.url,
            "bucket": BUCKET,
            **served.ready,
        }
        stop_signal = StopSignal()  # before the ready file: a test may stop the stack as soon as it reads it
        if args.ready_file:
            # Atomically: the test fixture polls for the file and must never read it half-written.
            partial = args.ready_file.with_name(args.ready_file.name + ".partial")
            partial.write_text(json.dumps(ready))
            partial.replace(args.ready_file)
        api.start()
        if not args.quiet:
            _banner(api.url, key, served)
        stop_signal.wait()
        api.stop()
    jwks.stop()
    return 0


def _banner(api_url: str, key: SigningKey, served: ServedArchive) -> None:
    print(f"\nweasis-link is serving on {api_url} ({served.description}, S3 on moto)\n", flush=True)
    print("Try:", flush=True)
    print(f'  curl -H "Authorization: Bearer $(make -s token)" "{api_url}/manifests?studyUID=<uid>"', flush=True)
    print(f'  curl -H "Authorization: Bearer $(make -s token)" "{api_url}/manifests?{served.sample_query}"', flush=True)
    try:
        answer = sample_request(api_url, key.sign(claims()), served.sample_query)
    except Exception as exc:  # the banner must not kill the stack
        print(f"(sample request failed: {exc})", file=sys.stderr, flush=True)
        return
    print(f"\nSample ({served.sample_query}): {answer['instances']} instances; open in Weasis with:", flush=True)
    print(f"  {answer['weasisUrl']}\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
