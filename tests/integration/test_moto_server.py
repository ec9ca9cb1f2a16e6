"""moto's S3 server as the local stack and the tests start it: each on a port it bound itself (port 0), so two
servers, or another process taking ports meanwhile, can never make it bind a taken port or wait forever."""

from __future__ import annotations

import socket

import boto3
import pytest

from weasis_link_dev.local_stack import AUDIT_BUS, BUCKET, REGION, create_audit_bus, create_bucket, moto_s3

pytestmark = pytest.mark.integration


def buckets(endpoint: str) -> list[str]:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # moto accepts any credentials
    )
    return [b["Name"] for b in client.list_buckets()["Buckets"]]


def test_each_moto_server_serves_on_a_port_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    with moto_s3() as first, moto_s3() as second:
        assert first != second
        create_bucket(first)
        # Both answer, each on its own port. In one process moto's servers share their backends, so both list the
        # same buckets, including those of other tests that ran before in this process.
        listed = buckets(first)
        assert BUCKET in listed
        assert buckets(second) == listed
        port = int(first.rsplit(":", 1)[1])
        with socket.socket() as intruder, pytest.raises(OSError, match="in use"):
            intruder.bind(("127.0.0.1", port))  # the port is held by the serving socket, not merely probed


def test_the_audit_bus_is_set_up_on_every_moto_server_of_a_process() -> None:
    """`make bench` runs several benchmarks in one process, each with its own moto server: each gets a working bus
    and copy queue, though moto's backends (and so the bus made by the first) are shared."""
    events_seen = []
    with moto_s3() as first, moto_s3() as second:
        for endpoint in (first, second):
            queue_url = create_audit_bus(endpoint)
            kwargs = {"endpoint_url": endpoint, "region_name": REGION}
            credentials = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
            events = boto3.client("events", **kwargs, **credentials)
            detail = f'{{"server": "{endpoint}"}}'
            entry = {"Source": "weasis-link.audit", "DetailType": "AuditEvent", "Detail": detail}
            answer = events.put_events(Entries=[{**entry, "EventBusName": AUDIT_BUS}])
            assert answer["FailedEntryCount"] == 0
            sqs = boto3.client("sqs", **kwargs, **credentials)
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5)
            events_seen += [m["Body"] for m in messages.get("Messages", [])]
    assert [endpoint for endpoint in (first, second) if any(endpoint in body for body in events_seen)] == [
        first,
        second,
    ]
