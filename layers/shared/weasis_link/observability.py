"""Logging set-up: domain modules log with the standard library under `weasis_link.*`; the function's Powertools
Logger formats them (JSON, correlation id). A redaction filter on the handler is the last line of defence: the
code never logs a token, a password or a patient name, and anything that looks like a credential is masked
before it is written anyway."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_AUTH_VALUE: Final = re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)[A-Za-z0-9._~+/=%-]{8,}")
_SECRET_PARAM: Final = re.compile(
    r"(?i)\b(access_token|password|client_secret|X-Amz-Signature|X-Amz-Security-Token)=[^&\s\"']+"
)
_STANDARD_ATTRS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    text = _JWT.sub("[redacted-jwt]", text)
    text = _AUTH_VALUE.sub(lambda m: f"{m[1]} [redacted]", text)
    return _SECRET_PARAM.sub(lambda m: f"{m[1]}=[redacted]", text)


class RedactSecrets(logging.Filter):
    """Masks credentials in the message, its arguments and any extra field of a log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.args:
            record.args = tuple(_clean(a) for a in record.args) if isinstance(record.args, tuple) else record.args
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS:
                record.__dict__[key] = _clean(value)
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are formatted later from exc_info; pre-render them redacted.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    return value


def configure_logging(powertools_logger: Any) -> None:
    """Route `weasis_link.*` records through the Powertools handler, and redact on that handler."""
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    logging.getLogger("weasis_link")  # make sure the parent exists before copying the configuration
    copy_config_to_registered_loggers(source_logger=powertools_logger, include={"weasis_link"})
    for handler in powertools_logger.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
