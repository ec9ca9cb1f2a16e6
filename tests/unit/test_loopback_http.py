"""The tests' loopback HTTP server (tools/weasis_link_dev/loopback_http.py): what it records, how it stops."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from weasis_link_dev.loopback_http import Answer, LoopbackServer, Request, forward, stopping, unused_port


def echo(request: Request) -> Answer:
    return Answer.json({"method": request.method, "path": request.path, "query": request.query}, 201)


def test_it_records_every_request_and_answers_what_respond_says() -> None:
    with LoopbackServer(echo) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        sent = urllib.request.Request(
            server.url("/token?a=1"),
            data=b"grant_type=client_credentials&scope=x",
            headers={"Authorization": "Basic abc", "Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(sent, timeout=10) as answer:
            assert answer.status == 201 and answer.headers["Content-Type"] == "application/json"
            assert json.loads(answer.read()) == {"method": "POST", "path": "/token", "query": {"a": "1"}}
        [request] = server.take()
        assert (request.target, request.header("authorization")) == ("/token?a=1", "Basic abc")
        assert request.form() == {"grant_type": "client_credentials", "scope": "x"}
        assert server.take() == []  # taken once


def test_a_stopped_server_refuses_connections() -> None:
    with LoopbackServer(echo) as server:
        url = server.url("/")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_forward_hands_back_the_upstream_answer() -> None:
    with LoopbackServer(echo) as upstream, LoopbackServer(lambda r: forward(upstream.base_url, r)) as proxy:
        with urllib.request.urlopen(proxy.url("/studies?PatientID=P1"), timeout=10) as answer:
            assert answer.status == 201
            assert json.loads(answer.read())["query"] == {"PatientID": "P1"}
        assert [r.target for r in upstream.requests] == ["/studies?PatientID=P1"]


def test_stopping_stops_every_server_it_started() -> None:
    with stopping(lambda: LoopbackServer(echo).start()) as start:
        urls = [start().url("/"), start().url("/")]
    for url in urls:
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=5)


def test_an_unused_port_refuses_connections() -> None:
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{unused_port()}/", timeout=5)
