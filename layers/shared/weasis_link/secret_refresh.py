"""Secrets with a maximum age: the connector configuration is re-read, and its `secretsmanager:` / `ssm:` references
resolved again, once it is older than SECRETS_MAX_AGE_SECONDS, so a rotated PACS password reaches warm execution
environments without a redeploy (they would otherwise keep the value of their cold start for hours).

A configuration without such references is never re-read. A refresh that fails (Secrets Manager unreachable, a
reference deleted) keeps the values in use and tries again a minute later: a working PACS password is not thrown
away because the secret store had a bad moment. The refresh happens at the start of an invocation, on the request
path: one GetSecretValue / GetParameter per reference, every SECRETS_MAX_AGE_SECONDS per environment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Final

from weasis_link.config import AppConfig, SecretResolver
from weasis_link.errors import ConfigurationError

logger = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_SECONDS: Final = 60.0
STORED_SECRET_KINDS: Final = ("secretsmanager:", "ssm:")


class RecordingResolver:
    """A secret resolver that remembers whether any reference named a secret store (env: references never change
    within an execution environment, so they alone are no reason to re-read)."""

    def __init__(self, resolve: SecretResolver) -> None:
        self._resolve = resolve
        self.used_secret_store = False

    def __call__(self, reference: str) -> str:
        if reference.startswith(STORED_SECRET_KINDS):
            self.used_secret_store = True
        return self._resolve(reference)


@dataclass(slots=True)
class ConfigRefresher:
    """Calls `apply` with a freshly loaded configuration when the one in use is older than `max_age_seconds`."""

    load: Callable[[], AppConfig]
    apply: Callable[[AppConfig], None]
    max_age_seconds: float
    _: KW_ONLY
    enabled: bool
    clock: Callable[[], float] = time.monotonic
    refreshes: int = field(default=0, init=False)
    _next: float = field(init=False)  # when the values in use are due for a refresh

    def __post_init__(self) -> None:
        self._next = self.clock() + self.max_age_seconds

    def refresh_if_stale(self) -> bool:
        """True when a new configuration was applied."""
        if not self.enabled or self.clock() < self._next:
            return False
        try:
            config = self.load()
        except ConfigurationError as exc:
            # The message names the reference, never a value (secret_references.py).
            logger.warning("secrets not refreshed; the values in use are kept", extra={"error": str(exc)})
            self._next = self.clock() + min(RETRY_AFTER_FAILURE_SECONDS, self.max_age_seconds)
            return False
        self.apply(config)
        self._next = self.clock() + self.max_age_seconds
        self.refreshes += 1
        logger.info("configuration re-read: secret references resolved again")
        return True
