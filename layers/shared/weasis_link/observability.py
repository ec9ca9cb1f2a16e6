"""Logging set-up: domain modules log with the standard library under `weasis_link.*`; the function's Powertools
Logger formats them (JSON, correlation id). Redaction of the formatted line is the last line of defence: the code
never logs a token, a password or a patient name, and anything that looks like a credential is masked before it is
written anyway — message, extra fields and tracebacks alike."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from weasis_link.fingerprint import MANIFEST_ID_IN_TEXT, manifest_fingerprint

_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_AUTH_VALUE: Final = re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)[A-Za-z0-9._~+/=%-]{8,}")
_SECRET_PARAM: Final = re.compile(
    r"(?i)\b(access_token|password|client_secret|X-Amz-Signature|X-Amz-Security-Token)=[^&\s\"']+"
)


def redact(text: str) -> str:
    text = MANIFEST_ID_IN_TEXT.sub(lambda m: manifest_fingerprint(m[0]), text)
    text = _JWT.sub("[redacted-jwt]", text)
    text = _AUTH_VALUE.sub(lambda m: f"{m[1]} [redacted]", text)
    return _SECRET_PARAM.sub(lambda m: f"{m[1]}=[redacted]", text)


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter whose every output line goes through `redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(powertools_logger: Any) -> None:
    """Redact on the Powertools handler, and route `weasis_link.*` records through it."""
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    formatter = powertools_logger.registered_formatter
    if type(formatter) is LambdaPowertoolsFormatter:
        # The same object (its appended keys, correlation id...) with format() redacting: a subclass with no state
        # of its own, so the swap is safe and functions keep their plain `Logger()`.
        formatter.__class__ = RedactingFormatter
    logging.getLogger("weasis_link")  # make sure the parent exists before copying the configuration
    copy_config_to_registered_loggers(source_logger=powertools_logger, include={"weasis_link"})
