"""pytest fixtures: the local stack (`python -m weasis_link_dev.local_stack`) as a subprocess, for end-to-end tests
over real HTTP. Each stack has its own signing key, moto S3 server and configuration; `local_stack` is the embedded
default, `local_stack_factory(config=..., env=...)` starts others (Orthanc, several archives...).

Manifest ids are capabilities and must never be logged (docs/security.md): every id a stack hands out through
`StackHandle.request` is recorded in ISSUED_MANIFEST_IDS, and when the session's stacks stop, the factory fails the
run if any of their log lines holds one of them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote_plus

import pytest

from weasis_link_dev.dev_keys import SigningKey, access_token_claims
from weasis_link_dev.local_stack import REGION

PENDING_SUFFIX = ".pending"  # storage.py's marker of a launched build
# What the builder logs as a build's last line (launch.py run_build, ThreadDispatcher) in the stack's JSON log, and
# what a launch logs when its build could not even be started (LambdaDispatcher).
BUILD_END_LINES = (
    "build stored",
    "build skipped: its manifest has already expired",
    "build failed",
    "builder invocation failed",
)
BUILD_WAIT_SECONDS = 120.0  # the builder's own deadline (BUILD_DEADLINE_SECONDS) plus its overhead, and slack

AUDIT_LINE = '{"auditEvent"'
SERVED_LINE = '{"servedRequest"'  # local_stack.print_served: one per request served (--record-requests)
QUEUE_DRAIN_SECONDS = 20.0  # the audit printer polls its queue every second
# Every stack this session started, for the audit check after each test (`audit_trail_check`).
STARTED_STACKS: list[StackHandle] = []
AUDIT_CHECK_SECONDS: list[float] = []  # what each check took: its cost to the suite (`audit_check_summary`)


# storage.MANIFEST_ID inside any text: a JSON answer, a Location header, a weasis:// URI once decoded.
_MANIFEST_ID: Final = re.compile(r"(?<![A-Za-z0-9_-])\d{10}-[A-Za-z0-9_-]{32}(?![A-Za-z0-9_-])")
ISSUED_MANIFEST_IDS: set[str] = set()


def manifest_ids_in(text: str) -> set[str]:
    """The manifest ids a text carries, raw or percent-encoded (weasis:// URIs encode the link once)."""
    return set(_MANIFEST_ID.findall(text)) | set(_MANIFEST_ID.findall(unquote_plus(text)))


def record_issued(headers: dict[str, str], body: bytes) -> None:
    text = " ".join(headers.values()) + " " + body[:1_000_000].decode("utf-8", errors="replace")
    ISSUED_MANIFEST_IDS.update(manifest_ids_in(text))


def leaked_manifest_ids(log_paths: list[Path], issued: set[str]) -> dict[str, list[str]]:
    """{log file: issued ids found in it}: what must stay empty."""
    leaks: dict[str, list[str]] = {}
    for path in log_paths:
        if not path.exists():
            continue
        found = manifest_ids_in(path.read_text(errors="replace")) & issued
        if found:
            leaks[str(path)] = sorted(found)
    return leaks


@dataclass
class StackHandle:
    api_url: str
    s3_endpoint: str
    jwks_url: str
    bucket: str
    key: SigningKey
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    _checked: int = 0  # how much of the log the audit check has read
    _clients: dict[str, Any] = field(default_factory=dict)

    def token(self, **claims: Any) -> str:
        """A token signed by this stack's key; keyword arguments go to access_token_claims (lifetime=-60...)."""
        return self.key.sign(access_token_claims(**claims))

    def get(
        self, path: str, token: str | None = None, headers: dict[str, str] | None = None, timeout: float = 60
    ) -> tuple[int, dict[str, str], bytes]:
        """GET without following redirects; returns (status, headers, body)."""
        return self.request("GET", path, token=token, headers=headers, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.api_url + path, method=method, data=body, headers=dict(headers or {}))
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=timeout) as response:
                answer = response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                answer = exc.code, dict(exc.headers.items()), exc.read()
        record_issued(answer[1], answer[2])
        return answer

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - moto accepts any credentials
        )

    def object_keys(self, *, settled: bool = True) -> list[str]:
        """The bucket's keys once no launched build is in flight (a snapshot taken earlier races with them);
        `settled=False` lists them at once, for a test that looks at a build in progress."""
        if settled:
            self.wait_for_builds()
        return self._keys()

    def log(self) -> str:
        """The function's log (stdout/stderr of the stack), without the audit trail's lines (`audit_log`), once no
        launched build is in flight: the builders log too, on their own threads."""
        self.wait_for_builds()
        return self._split_audit()[0]

    def audit_log(self) -> list[dict[str, Any]]:
        """The AuditEvents the stack's EventBridge delivered, in order (its `{"auditEvent": …}` documents): a sink
        of its own, which records patient IDs by design. Read once no launched build is in flight."""
        self.wait_for_builds()
        return self._split_audit()[1]

    def _split_audit(self) -> tuple[str, list[dict[str, Any]]]:
        """The log without the audit documents (and request records), and those documents."""
        kept, documents = _split_documents(self._log_text())
        return kept, [d["auditEvent"] for d in documents if "auditEvent" in d]

    def audit_check(self) -> list[str]:
        """What is wrong with the audit events delivered since the last check, against the requests this stack
        served meanwhile (weasis_link_dev.audit_checks.audit_mismatches); empty when all is well."""
        from weasis_link_dev.audit_checks import Served, audit_mismatches, expected_kinds

        size = self.log_path.stat().st_size if self.log_path.exists() else 0
        if size <= self._checked:
            return []  # nothing served, nothing delivered since the last check
        problems: list[str] = []
        if self.process.poll() is None:
            try:
                self.wait_for_builds()
            except Exception as exc:  # its S3 is down or gone (fault tests): no build to wait for
                if isinstance(exc, AssertionError):
                    problems.append(str(exc)[:300])
            try:
                self._drain_audit_queue()
            except AssertionError as exc:
                problems.append(str(exc))
        raw = self.log_path.read_bytes()
        end = raw.rfind(b"\n") + 1
        chunk = raw[self._checked : end].decode("utf-8", errors="replace")
        self._checked = end
        _, documents = _split_documents(chunk)
        served = [Served.of(d["servedRequest"]) for d in documents if "servedRequest" in d]
        events = [d["auditEvent"] for d in documents if "auditEvent" in d]
        if self.extra.get("audit_queue"):
            return problems + audit_mismatches(served, events)
        # The bus is elsewhere, down (fault tests): fail closed means no disclosure answered without its event.
        if self.env.get("AUDIT_FAIL_OPEN") == "true":
            return problems
        return problems + [
            f"{r.method} {r.route_key} -> {r.status} with the audit bus down (fail closed: 503 audit-unavailable)"
            for r in served
            if r.status < 400 and any(k != "refusal" for k in expected_kinds(r)[0])
        ]

    def _drain_audit_queue(self) -> None:
        """Waits until the audit printer has printed every event the bus copied to its queue."""
        queue = self.extra.get("audit_queue")
        if not queue:
            return
        if "sqs" not in self._clients:
            import boto3

            split = urllib.parse.urlsplit(queue)
            self._clients["sqs"] = boto3.client(
                "sqs",
                endpoint_url=f"{split.scheme}://{split.netloc}",
                region_name=REGION,
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106 - moto accepts any credentials
            )
        names: Any = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        deadline = time.monotonic() + QUEUE_DRAIN_SECONDS
        while True:
            attributes = self._clients["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
            if all(int(attributes.get(n, 0)) == 0 for n in names):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the audit printer left events in its queue: {attributes}")
            time.sleep(0.02)

    def wait_for_builds(self, timeout: float = BUILD_WAIT_SECONDS) -> None:
        """Wait until every build a launch started has ended.

        A launch writes `<id>.pending` before it answers (storage.py, never deleted by a build), and each launch
        ends with exactly one log line of BUILD_END_LINES (its build stored, skipped as expired or failed to store,
        or the builder could not be invoked). So no build is in flight once the log holds as many such lines as
        the bucket holds pending markers."""
        deadline = time.monotonic() + timeout
        while True:
            keys = self._keys()
            pending = [k for k in keys if k.endswith(PENDING_SUFFIX)]
            ended = sum(self._log_text().count(f'"message":"{line}"') for line in BUILD_END_LINES)
            if ended >= len(pending):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self._log_text()[-4000:]
                raise AssertionError(f"{len(pending) - ended} build(s) still in flight after {timeout:.0f} s:\n{tail}")
            time.sleep(0.05)

    def _keys(self) -> list[str]:
        if "s3" not in self._clients:
            self._clients["s3"] = self.s3()
        paginator = self._clients["s3"].get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=self.bucket) for o in page.get("Contents", [])]

    def _log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(Exception):  # the audit check reads every event printed before the stop
                self._drain_audit_queue()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _split_documents(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The text without the stack's JSON documents (audit events, request records), and those documents in order.
    A document may also sit inside a line: print() writes a text and its newline in two calls, so another thread's
    line (a metric) can be cut there."""
    decoder = json.JSONDecoder()
    kept: list[str] = []
    documents: list[dict[str, Any]] = []
    for line in text.splitlines(keepends=True):
        while True:
            starts = [i for i in (line.find(AUDIT_LINE), line.find(SERVED_LINE)) if i != -1]
            if not starts:
                break
            start = min(starts)
            document, end = decoder.raw_decode(line, start)
            documents.append(document)
            line = line[:start] + line[end:]
        if line.strip():
            kept.append(line)
    return "".join(kept), documents


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def start_stack(
    config: Path | None = None,
    env: dict[str, str] | None = None,
    *,
    startup_timeout: float = 60,
    args: list[str] | None = None,
) -> StackHandle:
    workdir = Path(tempfile.mkdtemp(prefix="weasis-link-stack-"))
    key_file, ready, log_path = workdir / "key.pem", workdir / "ready.json", workdir / "stack.log"
    key = SigningKey.load_or_create(key_file)
    command = [
        sys.executable,
        "-m",
        "weasis_link_dev.local_stack",
        "--port",
        "0",
        "--quiet",
        "--key-file",
        str(key_file),
        "--ready-file",
        str(ready),
        "--record-requests",
        *(args or []),
    ]
    if config is not None:
        command += ["--config", str(config)]
    for name, value in (env or {}).items():
        command += ["--env", f"{name}={value}"]
    log = log_path.open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"}
    )
    deadline = time.monotonic() + startup_timeout
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"local stack did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
        time.sleep(0.05)
    endpoints = json.loads(ready.read_text())
    handle = StackHandle(
        endpoints["api_url"],
        endpoints["s3_endpoint"],
        endpoints["jwks_url"],
        endpoints["bucket"],
        key,
        process,
        log_path,
        endpoints,
        dict(env or {}),
    )
    STARTED_STACKS.append(handle)
    return handle


StackFactory = Callable[..., StackHandle]


@pytest.fixture(scope="session")
def local_stack_factory() -> Iterator[StackFactory]:
    started: list[StackHandle] = []

    def make(config: Path | None = None, env: dict[str, str] | None = None, **kwargs: Any) -> StackHandle:
        handle = start_stack(config, env, **kwargs)
        started.append(handle)
        return handle

    yield make
    problems = {str(h.log_path): h.audit_check() for h in started}
    for handle in started:
        handle.stop()
    problems = {path: found for path, found in problems.items() if found}
    if problems:
        pytest.fail(f"audit trail: requests without exactly their events, or events that break the rules: {problems}")
    # Every manifest id this session's stacks issued, against every line they logged.
    leaks = leaked_manifest_ids([h.log_path for h in started], ISSUED_MANIFEST_IDS)
    if leaks:
        pytest.fail(f"manifest ids appear in local-stack logs (capabilities must never be logged): {leaks}")


@pytest.fixture(autouse=True)
def audit_trail_check() -> Iterator[None]:
    """After every test: each request the running stacks served produced exactly its audit events, each valid (FHIR
    R4, BALP) and without a token, a name, a manifest id or a URL (weasis_link_dev.audit_checks; the rule is in
    docs/security.md). Autouse, for every test of every layer: no test can leave it out."""
    yield
    started = time.perf_counter()
    problems = {str(h.log_path): h.audit_check() for h in STARTED_STACKS}
    problems = {path: found for path, found in problems.items() if found}
    if STARTED_STACKS:
        AUDIT_CHECK_SECONDS.append(time.perf_counter() - started)
    if problems:
        pytest.fail(f"audit trail: requests without exactly their events, or events that break the rules: {problems}")


@pytest.fixture(scope="session")
def local_stack(local_stack_factory: StackFactory) -> StackHandle:
    """The stack as `make run` serves it: the embedded sample archive."""
    return local_stack_factory()


def audit_check_summary() -> str | None:
    """One line for the terminal summary: how many checks ran and what they cost."""
    if not AUDIT_CHECK_SECONDS:
        return None
    total, longest = sum(AUDIT_CHECK_SECONDS), max(AUDIT_CHECK_SECONDS)
    return f"audit trail checked after {len(AUDIT_CHECK_SECONDS)} tests in {total:.1f} s (longest {longest:.2f} s)"
