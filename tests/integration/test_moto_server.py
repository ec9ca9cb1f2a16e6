"""moto's S3 server as the local stack and the tests start it: each on a port it bound itself (port 0), so two
servers, or another process taking ports meanwhile, can never make it bind a taken port or wait forever."""

from __future__ import annotations

import socket

import boto3
import pytest

from weasis_link_dev.local_stack import BUCKET, REGION, create_bucket, moto_s3

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
