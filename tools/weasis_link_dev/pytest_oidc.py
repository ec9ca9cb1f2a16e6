"""pytest fixtures: a real OpenID provider (node's `oidc-provider`, weasis_link_dev.oidc_provider) on loopback, and
connector files that trust given issuers.

- ``oidc_provider_factory``: ``(clients, resources) -> OidcProvider``, started (npm installs the pinned package into
  the cache folder the first time); every provider of the session is stopped at its end.
- ``config_with_auth(auth, directory)``: the embedded default connector file plus an ``auth:`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from weasis_link_dev.dev_keys import REPO_ROOT
from weasis_link_dev.oidc_provider import Client, OidcProvider

__all__ = ["OidcProviderFactory", "config_with_auth", "oidc_provider_factory"]

DEFAULT_CONFIG = REPO_ROOT / "functions" / "api" / "weasis-link.yaml"
OidcProviderFactory = Callable[[list[Client], dict[str, str]], OidcProvider]


def config_with_auth(auth: dict[str, Any], directory: Path) -> Path:
    """The sample-archive connector file of `make run`, trusting the issuers of `auth` (an `auth:` block)."""
    path = directory / "weasis-link-auth.yaml"
    path.write_text(
        DEFAULT_CONFIG.read_text(encoding="utf-8") + "\n" + yaml.safe_dump({"auth": auth}), encoding="utf-8"
    )
    return path


@pytest.fixture(scope="session")
def oidc_provider_factory() -> Iterator[OidcProviderFactory]:
    started: list[OidcProvider] = []

    def make(clients: list[Client], resources: dict[str, str]) -> OidcProvider:
        provider = OidcProvider(clients, resources)
        started.append(provider)
        return provider.start()

    yield make
    for provider in started:
        provider.stop()
