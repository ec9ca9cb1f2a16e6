"""weasis_link_dev.bundled_config, the `sam build` step (tools/check-iac) that rewrites the functions' YAML
configurations as the JSON PyYAML reads from them: the function then reads them with json (no PyYAML at cold start)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from weasis_link.config import json_document, load_config
from weasis_link_dev.bundled_config import as_json, rewrite
from weasis_link_dev.dev_keys import REPO_ROOT

SHIPPED = [
    REPO_ROOT / "functions" / "api" / "weasis-link.yaml",
    *sorted((REPO_ROOT / "docs" / "examples").glob("*.yaml")),
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_configuration_becomes_json_that_reads_the_same(path: Path, tmp_path: Path) -> None:
    original = path.read_text(encoding="utf-8")
    converted, why = as_json(original)
    assert converted is not None, why
    assert json_document(converted) == yaml.safe_load(original)  # the runtime's fast path, the same data
    assert yaml.safe_load(converted) == yaml.safe_load(original)  # and still YAML that reads the same
    # The same validated configuration (a copy beside the original's files: relative paths resolve alike).
    environ = {"PACS_DB_URI": "postgresql://db.example/pacsdb", "PACS_DB_USER": "u", "PACS_DB_PASSWORD": "p"}
    copy = path.with_name(f".bundled-test-{path.name}")
    try:
        copy.write_text(converted, encoding="utf-8")
        assert load_config(copy, environ=environ).model_dump() == load_config(path, environ=environ).model_dump()
    finally:
        copy.unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("connector:\n  since: 2024-01-01\n", "JSON cannot carry"),  # a YAML 1.1 date
        ("connector:\n  rate: 0.00001\n", "otherwise"),  # json writes 1e-05, which YAML 1.1 reads as a string
        ("- a\n- b\n", "not a mapping"),
        ("connector: [\n", "not valid YAML"),
    ],
)
def test_a_document_json_cannot_carry_exactly_stays_yaml(text: str, reason: str) -> None:
    converted, why = as_json(text)
    assert converted is None
    assert reason in why


def test_rewrite_changes_the_functions_files_only_and_never_writes_through_a_link(tmp_path: Path) -> None:
    source = tmp_path / "src" / "weasis-link.yaml"
    source.parent.mkdir()
    source.write_text("# comment\nconnector:\n  config: {}\n", encoding="utf-8")
    build = tmp_path / "build"
    (build / "ApiFunction").mkdir(parents=True)
    (build / "BuilderFunction").mkdir()
    (build / "SharedLayer" / "python").mkdir(parents=True)
    (build / "ApiFunction" / "weasis-link.yaml").write_text(source.read_text(), encoding="utf-8")
    (build / "BuilderFunction" / "weasis-link.yaml").symlink_to(source)
    (build / "BuilderFunction" / "dates.yaml").write_text("when: 2024-01-01\n", encoding="utf-8")
    layer_file = build / "SharedLayer" / "python" / "data.yaml"
    layer_file.write_text("a: 1\n", encoding="utf-8")

    lines = rewrite(build)

    assert lines == [
        "ApiFunction/weasis-link.yaml: rewritten as JSON",
        "BuilderFunction/dates.yaml: stays YAML, holds a value JSON cannot carry (TypeError)",
        "BuilderFunction/weasis-link.yaml: rewritten as JSON",
    ]
    for name in ("ApiFunction", "BuilderFunction"):
        written = build / name / "weasis-link.yaml"
        assert not written.is_symlink()
        assert json_document(written.read_text(encoding="utf-8")) == {"connector": {"config": {}}}
    assert source.read_text(encoding="utf-8").startswith("# comment")  # the sources keep their comments
    assert layer_file.read_text(encoding="utf-8") == "a: 1\n"
