"""The trimmed AWS service models the functions ship (weasis_link/aws_models/): each is exactly botocore's model of
its service reduced to the operations the functions call (tools/weasis_link_dev/aws_models.py), the functions'
clients load it rather than botocore's full model, and boto3's default session keeps the full one. Exact at the
botocore version the files were written from; under another (a fresh venv takes the newest boto3), a subset of its
model that still holds."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import botocore
import pytest
from moto import mock_aws

from weasis_link.audit_trail import EventBridgeSink
from weasis_link.storage import AWS_MODELS, aws_session, s3_client
from weasis_link_dev.aws_models import (
    ENDPOINT_SERVICES,
    OPERATIONS,
    endpoints_path,
    model_path,
    source_path,
    trimmed_endpoints,
    trimmed_model,
)


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


GENERATED_FROM = source_path().read_text(encoding="utf-8").strip()
REGENERATE = "run `python -m weasis_link_dev.aws_models`"


@pytest.mark.parametrize("service", sorted(OPERATIONS))
def test_each_shipped_model_is_botocores_own_trimmed(service: str) -> None:
    version, model = trimmed_model(service, OPERATIONS[service])
    shipped = json.loads(model_path(service, version).read_text(encoding="utf-8"))
    assert sorted(shipped["operations"]) == sorted(OPERATIONS[service])
    if botocore.__version__ == GENERATED_FROM:
        assert shipped == model, REGENERATE
        return
    # Another botocore (a newer one in a fresh venv): the shipped copy must still be a subset of its model, each
    # operation with the same input and output, each shape with no member botocore has dropped since.
    assert shipped["metadata"]["protocol"] == model["metadata"]["protocol"], REGENERATE
    for name, operation in shipped["operations"].items():
        assert (operation["http"], operation.get("input"), operation.get("output")) == (
            model["operations"][name]["http"],
            model["operations"][name].get("input"),
            model["operations"][name].get("output"),
        ), REGENERATE
    for name, shape in shipped["shapes"].items():
        assert set(shape.get("members", {})) <= set(model["shapes"][name].get("members", {})), REGENERATE


def test_every_shipped_model_is_listed() -> None:
    assert sorted(p.name for p in AWS_MODELS.iterdir() if p.is_dir()) == sorted(OPERATIONS)


def test_the_shipped_endpoints_are_botocores_own_for_the_functions_services() -> None:
    shipped = json.loads(endpoints_path().read_text(encoding="utf-8"))
    assert set(OPERATIONS) <= ENDPOINT_SERVICES
    if botocore.__version__ == GENERATED_FROM:
        assert shipped == trimmed_endpoints(), REGENERATE
    else:  # another botocore: the same partitions (a region it added gets its partition's default endpoint)
        current = trimmed_endpoints()
        assert [p["partition"] for p in shipped["partitions"]] == [p["partition"] for p in current["partitions"]]


@pytest.mark.parametrize(
    ("service", "region", "host"),
    [
        ("s3", "eu-central-1", "s3.eu-central-1.amazonaws.com"),
        ("events", "cn-north-1", "events.cn-north-1.amazonaws.com.cn"),
        ("lambda", "us-gov-west-1", "lambda.us-gov-west-1.amazonaws.com"),
        ("sqs", "eu-west-3", "sqs.eu-west-3.amazonaws.com"),  # not listed: its partition's default
    ],
)
def test_the_functions_clients_find_the_same_endpoints_as_botocores(service: str, region: str, host: str) -> None:
    ours = aws_session().client(service, region_name=region).meta.endpoint_url  # type: ignore[call-overload]
    assert ours == boto3.client(service, region_name=region).meta.endpoint_url  # type: ignore[call-overload]
    assert ours == f"https://{host}"


def test_the_functions_clients_have_only_the_operations_they_call() -> None:
    s3 = s3_client("us-east-1")
    assert sorted(s3.meta.service_model.operation_names) == sorted(OPERATIONS["s3"])
    events = EventBridgeSink("bus", "us-east-1")._events()
    assert events.meta.service_model.operation_names == ["PutEvents"]
    assert aws_session().client("sqs", region_name="us-east-1").meta.service_model.operation_names  # botocore's


def test_the_trimmed_s3_client_does_what_the_functions_do() -> None:
    s3 = s3_client("us-east-1")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"x", Metadata={"expires-at": "1"})
    assert s3.head_object(Bucket="bkt", Key="k")["Metadata"] == {"expires-at": "1"}
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == b"x"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="bkt")
    assert [o["Key"] for page in pages for o in page["Contents"]] == ["k"]
    assert "X-Amz-Signature=" in s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"})
    s3.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "k"}]})
    s3.delete_object(Bucket="bkt", Key="k")


def test_boto3s_default_session_keeps_the_full_models() -> None:
    s3_client("us-east-1")  # the functions' session exists
    assert "ListBuckets" in boto3.client("s3", region_name="us-east-1").meta.service_model.operation_names
    assert "CreateEventBus" in boto3.client("events", region_name="us-east-1").meta.service_model.operation_names
