"""The layer's pins agree with the runtime: the layer comes first on Lambda's sys.path, so a package it carries
shadows the runtime's copy (python-dateutil, which botocore needs below 3). tools/check-iac checks the built layer
as a whole; this checks the pins themselves, offline."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def layer_pins() -> dict[str, str]:
    lines = (ROOT / "layers" / "shared" / "requirements.txt").read_text().splitlines()
    pins = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return {r.name.lower(): str(r.specifier).removeprefix("==") for r in pins}


def test_python_dateutil_is_pinned_to_a_version_botocore_and_pg8000_accept() -> None:
    version = layer_pins()["python-dateutil"]
    for dist in ("botocore", "pg8000"):
        wanted = [Requirement(r) for r in importlib.metadata.requires(dist) or () if r.startswith("python-dateutil")]
        assert wanted, dist
        assert all(r.specifier.contains(version) for r in wanted), (dist, [str(r) for r in wanted])


def test_the_installed_python_dateutil_is_the_layers() -> None:
    assert importlib.metadata.version("python-dateutil") == layer_pins()["python-dateutil"]
