"""Resolve secret references in the configuration at cold start: `secretsmanager:<id>[#json-key]`,
`ssm:<parameter-name>` (decrypted) or `env:<VAR>`. boto3 is imported only when a reference needs it."""

from __future__ import annotations

import json
import os
from typing import Any

from weasis_link.errors import ConfigurationError


def resolve_reference(reference: str) -> str:
    kind, _, target = reference.partition(":")
    if not target:
        raise ConfigurationError(f"empty {kind} reference")
    if kind == "env":
        value = os.environ.get(target)
        if value is None:
            raise ConfigurationError(f"environment variable {target} is not set")
        return value
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        from weasis_link.storage import aws_session
    except ImportError as exc:  # pragma: no cover - boto3 ships with the Lambda runtime
        raise ConfigurationError("boto3 is needed to resolve secret references") from exc
    try:
        if kind == "ssm":
            answer: Any = aws_session().client("ssm").get_parameter(Name=target, WithDecryption=True)
            return str(answer["Parameter"]["Value"])
        if kind == "secretsmanager":
            secret_id, _, json_key = target.partition("#")
            answer = aws_session().client("secretsmanager").get_secret_value(SecretId=secret_id)
            secret = str(answer["SecretString"])
            if not json_key:
                return secret
            try:
                return str(json.loads(secret)[json_key])
            except (ValueError, KeyError, TypeError):
                raise ConfigurationError(f"secret {secret_id} has no JSON key '{json_key}'") from None
    except (BotoCoreError, ClientError) as exc:
        # The error names the reference, never a value.
        raise ConfigurationError(f"cannot resolve {kind} reference {target}: {type(exc).__name__}") from None
    raise ConfigurationError(f"unknown reference kind '{kind}' (use secretsmanager:, ssm: or env:)")
