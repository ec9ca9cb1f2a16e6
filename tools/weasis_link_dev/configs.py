"""Connector configurations for tests, loaded the way the service loads its file."""

from __future__ import annotations

from pathlib import Path

from weasis_link.config import AppConfig, load_config


def config_from_text(text: str, directory: Path) -> AppConfig:
    """The configuration `text` (YAML), written to a file in `directory` and loaded with no environment; secret
    references are kept as they are (the tests that resolve them build their own resolver)."""
    path = directory / "c.yaml"
    path.write_text(text)
    return load_config(path, environ={}, resolve_secret=lambda reference: reference)
