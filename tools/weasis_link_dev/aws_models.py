"""The trimmed AWS service models the functions ship (layers/shared/weasis_link/aws_models/): botocore's own model of
a service, reduced to the operations the functions call and the shapes those reference (documentation left out),
and botocore's endpoints.json reduced to the services the functions use. A client made from the functions' session
(weasis_link.storage.aws_session) then parses and builds only those at cold start. tests/unit/test_aws_models.py
proves each file is what this module makes from the installed botocore; `python -m weasis_link_dev.aws_models`
writes them again after a botocore upgrade."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import botocore
import botocore.session

import weasis_link.storage

# Service -> the operations the functions call on it (weasis_link.storage, audit_trail).
OPERATIONS: Final[dict[str, tuple[str, ...]]] = {
    "events": ("PutEvents",),
    "s3": (
        *("PutObject", "GetObject", "HeadObject", "DeleteObject", "DeleteObjects", "ListObjectsV2"),
        "HeadBucket",  # botocore asks a bucket's region with it when S3 answers from another region
        "CreateBucket",  # the local stack's and the tests' bucket, made with the functions' client
    ),
}


# The services the functions' session makes clients of (storage.aws_session), and those botocore's credential
# providers may (STS for web identity and role chaining, SSO on a developer's machine).
ENDPOINT_SERVICES: Final = frozenset(
    {"s3", "events", "lambda", "ssm", "secretsmanager", "sts", "sso", "sso-oidc", "portal.sso"}
)


def _without_documentation(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_documentation(v) for k, v in value.items() if k != "documentation"}
    if isinstance(value, list):
        return [_without_documentation(v) for v in value]
    return value


def trimmed_model(service: str, operations: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """(api version, model): botocore's latest model of `service` with only `operations` and their shapes."""
    loader = botocore.session.get_session().get_component("data_loader")
    version = loader.determine_latest_version(service, "service-2")
    full: dict[str, Any] = loader.load_service_model(service, "service-2", version)
    shapes: dict[str, Any] = {}

    def add(name: str) -> None:
        if name in shapes:
            return
        shape = full["shapes"][name]
        shapes[name] = _without_documentation(shape)
        for ref in (shape.get(k) for k in ("member", "key", "value")):
            if ref is not None:
                add(ref["shape"])
        for member in shape.get("members", {}).values():
            add(member["shape"])

    kept = {}
    for name in operations:
        operation = full["operations"][name]
        kept[name] = _without_documentation(operation)
        for ref in (operation.get("input"), operation.get("output"), *operation.get("errors", [])):
            if ref is not None:
                add(ref["shape"])
    model = {k: v for k, v in full.items() if k not in ("operations", "shapes", "documentation")}
    return version, model | {"operations": kept, "shapes": dict(sorted(shapes.items()))}


def trimmed_endpoints() -> dict[str, Any]:
    """botocore's endpoints.json (1.2 MB, every service of every partition, parsed at the first client of a session)
    with only the services the functions' session makes clients of; any other service still gets its partition's
    default endpoint."""
    full: dict[str, Any] = botocore.session.get_session().get_component("data_loader").load_data("endpoints")
    partitions = [
        p | {"services": {k: v for k, v in p["services"].items() if k in ENDPOINT_SERVICES}} for p in full["partitions"]
    ]
    return full | {"partitions": partitions}


def model_path(service: str, version: str) -> Path:
    return weasis_link.storage.AWS_MODELS / service / version / "service-2.json"


def endpoints_path() -> Path:
    return weasis_link.storage.AWS_MODELS / "endpoints.json"


def source_path() -> Path:
    """The botocore version the files were written from."""
    return weasis_link.storage.AWS_MODELS / "botocore-version.txt"


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def main() -> None:
    for service, operations in OPERATIONS.items():
        version, model = trimmed_model(service, operations)
        _write(model_path(service, version), model)
        print(f"{model_path(service, version)}: {len(model['operations'])} operations, {len(model['shapes'])} shapes")
    _write(endpoints_path(), trimmed_endpoints())
    print(f"{endpoints_path()}: {', '.join(sorted(ENDPOINT_SERVICES))}")
    source_path().write_text(botocore.__version__ + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
