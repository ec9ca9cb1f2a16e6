"""A `sam build` step (tools/check-iac): each YAML configuration bundled with a function is rewritten as the JSON
document PyYAML reads from it, so that the function reads it with the standard library's json at cold start and never
imports PyYAML (weasis_link.config.json_document: about 100 M instructions). JSON is YAML: the file keeps its name,
WEASIS_LINK_CONFIG stays right, and the sources keep their comments. A file is rewritten only when the runtime's
reader gives back exactly what PyYAML read; otherwise (a YAML date, a float JSON would write with an exponent, a
document that is not a mapping) it stays YAML, with the reason printed.

    python -m weasis_link_dev.bundled_config .aws-sam/build
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from weasis_link.config import json_document


def as_json(text: str) -> tuple[str | None, str]:
    """(the JSON text, "") or (None, why the document stays YAML)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None, "not valid YAML (the function will say where)"
    if not isinstance(data, dict):
        return None, "not a mapping"
    try:
        converted = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    except (TypeError, ValueError) as exc:
        return None, f"holds a value JSON cannot carry ({type(exc).__name__})"
    if not _same(json_document(converted), data):
        return None, "the runtime would read its JSON otherwise than PyYAML reads the YAML"
    return converted, ""


def _same(a: object, b: object) -> bool:
    """Equal, type for type (1 == 1.0 == True in Python, not in a configuration)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def rewrite(build: Path) -> list[str]:
    """Rewrites the YAML files of every function artefact under `build` (a layer, with its python/, is left alone);
    one line per file."""
    lines = []
    for artefact in sorted(p for p in build.iterdir() if p.is_dir() and not (p / "python").is_dir()):
        for path in sorted(p for p in artefact.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()):
            converted, why = as_json(path.read_text(encoding="utf-8"))
            where = path.relative_to(build)
            if converted is None:
                lines.append(f"{where}: stays YAML, {why}")
                continue
            path.unlink()  # never written through: a link would lead back to the sources
            path.write_text(converted, encoding="utf-8")
            lines.append(f"{where}: rewritten as JSON")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m weasis_link_dev.bundled_config <sam build directory>", file=sys.stderr)
        return 2
    for line in rewrite(Path(argv[0])):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
