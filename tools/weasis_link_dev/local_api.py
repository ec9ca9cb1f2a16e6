"""The local front door: a standard-library HTTP server that turns each request into an API Gateway HTTP API
(payload format 2.0) event, calls the real `lambda_handler`, and writes its response back."""

from __future__ import annotations

import base64
import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
# template.yaml's routes: the access log names the route (as API Gateway's routeKey does), never the path, which for
# GET /manifests/{id} is a capability.
ROUTES = (
    ("GET", re.compile(r"/manifests"), "GET /manifests"),
    ("POST", re.compile(r"/manifests"), "POST /manifests"),
    ("GET", re.compile(r"/manifests/[^/]+"), "GET /manifests/{id}"),
    ("GET", re.compile(r"/weasis"), "GET /weasis"),
    ("GET", re.compile(r"/IHEInvokeImageDisplay"), "GET /IHEInvokeImageDisplay"),
)


def route_key(method: str, path: str) -> str:
    """API Gateway's routeKey for a request: its route, or `$default` when none matches."""
    return next((key for m, pattern, key in ROUTES if m == method and pattern.fullmatch(path)), "$default")


@dataclass
class LambdaContext:
    function_name: str = "weasis-link-api-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:weasis-link-api-local"
    aws_request_id: str = ""
    log_group_name: str = "/aws/lambda/weasis-link-api-local"
    log_stream_name: str = "local"
    deadline: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def http_api_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str = "127.0.0.1",
    domain: str = "127.0.0.1",
) -> dict[str, Any]:
    """The event API Gateway would send for this request (stage `$default`). `domain` is the server's configured
    address: links are built from it, never from the client's Host header."""
    parts = urlsplit(target)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        else:
            joined[key] = f"{joined[key]},{value}" if key in joined else value
    query: dict[str, str] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v  # what API Gateway does with repeated parameters
    now = dt.datetime.now(dt.UTC)
    request_id = uuid.uuid4().hex
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key(method, parts.path or "/"),
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": joined,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key(method, parts.path or "/"),
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        content_type = joined.get("content-type", "")
        if content_type.startswith(("text/", "application/json", "application/xml")) and _is_utf8(body):
            event["body"] = body.decode("utf-8")
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class LocalApiServer:
    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 3000,
        timeout: float = 29.0,
        on_served: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> None:
        self.handler = handler
        self.timeout = timeout
        # Called with (event, response) before the answer is written: the local stack's request record.
        self.on_served = on_served
        # One request at a time, as in one Lambda execution environment: Powertools' resolver keeps the current
        # event on the class (BaseRouter.current_event), so two concurrent calls would read each other's request,
        # token included. Connections are still accepted concurrently; only the handler calls queue.
        self._handler_lock = threading.Lock()
        owner = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return
                body = self.rfile.read(length) if length else b""
                event = http_api_event(
                    self.command,
                    self.path,
                    list(self.headers.items()),
                    body,
                    source_ip=self.client_address[0],
                    domain=f"{owner.host}:{owner.port}",
                )
                context = LambdaContext(
                    aws_request_id=event["requestContext"]["requestId"], deadline=time.monotonic() + owner.timeout
                )
                try:
                    with owner._handler_lock:
                        response = owner.handler(event, context)
                except Exception:  # what API Gateway answers when the function fails
                    response = {
                        "statusCode": 500,
                        "body": '{"message":"Internal Server Error"}',
                        "headers": {"content-type": "application/json"},
                    }
                if owner.on_served is not None:
                    owner.on_served(event, response)
                self._write(response)

            def _write(self, response: dict[str, Any]) -> None:
                raw = response.get("body") or ""
                payload = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode("utf-8")
                self.send_response(int(response.get("statusCode", 200)))
                for name, value in (response.get("headers") or {}).items():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, str(value))
                for name, values in (response.get("multiValueHeaders") or {}).items():
                    for value in values:
                        self.send_header(name, str(value))
                for cookie in response.get("cookies") or []:
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def __getattr__(self, name: str) -> Any:
                # Every method (QUERY, TRACE, anything) reaches the function, as behind API Gateway.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                # The route, not the path (a manifest id is a capability) nor the query (it may carry access_token).
                # A malformed request line is logged before it is parsed: no route then, and no echo of it.
                route = route_key(str(getattr(self, "command", None)), urlsplit(getattr(self, "path", "")).path)
                status = str(args[1]) if len(args) > 1 and str(args[1]).isdigit() else str(args[0] if args else "")
                print(f"{self.address_string()} {route} {status if status.isdigit() else '-'}", flush=True)

        self._server = ThreadingHTTPServer((host, port), RequestHandler)
        self._server.daemon_threads = True
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalApiServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
