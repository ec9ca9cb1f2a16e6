"""A recording HTTP server on 127.0.0.1, at a free port, for tests: a PACS that answers no match, a token endpoint,
a proxy in front of Orthanc or moto, a JWKS endpoint. Each is a function from the request to the answer; the server
records every request, and starts and stops (or runs as a context manager) the same way for all of them."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ParamSpec, Protocol, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # the path and the query string, as sent
    headers: Mapping[str, str]  # names in lower case
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def form(self) -> dict[str, str]:
        """An application/x-www-form-urlencoded body."""
        return dict(parse_qsl(self.body.decode()))


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # Content-Length is added

    @classmethod
    def json(cls, document: Any, status: int = 200, content_type: str = "application/json") -> Answer:
        return cls(status, json.dumps(document).encode(), {"Content-Type": content_type})


Respond = Callable[[Request], Answer]


class LoopbackServer:
    """Serves `respond` on 127.0.0.1 (a free port unless `port` is given) and records every request it answers."""

    def __init__(self, respond: Respond, *, port: int = 0, http11: bool = False) -> None:
        self.respond = respond
        self.requests: list[Request] = []
        self._port = port
        self._http11 = http11  # keep-alive, as a client of S3 expects
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        return self.base_url + path

    def take(self) -> list[Request]:
        """The requests recorded since the last call."""
        with self._lock:
            taken, self.requests = self.requests, []
        return taken

    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if owner._http11 else "HTTP/1.0"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                with owner._lock:
                    owner.requests.append(request)
                answer = owner.respond(request)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a read timeout)
                    pass

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="loopback-http", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def forward(upstream: str, request: Request, headers: Mapping[str, str] | None = None, timeout: float = 60) -> Answer:
    """`upstream`'s answer to `request` (a proxy's `respond`), sent with `headers` (default: the request's own)."""
    target = urlsplit(upstream)
    connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=timeout)
    try:
        sent = dict(request.headers) if headers is None else dict(headers)
        connection.request(request.method, request.target, body=request.body or None, headers=sent)
        answer = connection.getresponse()
        body = answer.read()
    finally:
        connection.close()
    kept = {
        n: v for n, v in answer.getheaders() if n.lower() not in ("transfer-encoding", "connection", "content-length")
    }
    return Answer(answer.status, body, kept)


def no_match(request: Request) -> Answer:  # noqa: ARG001 - every request gets the same answer
    """A DICOMweb archive that answers every QIDO-RS query with no match."""
    return Answer(200, b"[]", {"Content-Type": "application/dicom+json"})


class Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=Stoppable)
P = ParamSpec("P")


@contextlib.contextmanager
def stopping(start: Callable[P, S]) -> Iterator[Callable[P, S]]:
    """`start`, every result of which is stopped on exit: a fixture's factory of test servers."""
    started: list[S] = []

    def start_and_keep(*args: P.args, **kwargs: P.kwargs) -> S:
        server = start(*args, **kwargs)
        started.append(server)
        return server

    try:
        yield start_and_keep
    finally:
        for server in started:
            server.stop()


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on once the probe is closed: connections to it are refused (an
    archive that is down), or a server started next can bind it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
