"""How a DICOM_WEB connector authenticates its own QIDO-RS requests (`dicom-web-connector.authentication`): none,
HTTP Basic, the caller's bearer token passed on, or an OAuth2 client-credentials service token. Independent of what
goes into the manifest for Weasis (archives/access.py). Neither a password nor a token reaches a message or a log."""

from __future__ import annotations

import base64
import threading
from typing import Protocol

from weasis_link.config import QidoAuthenticationConfig
from weasis_link.errors import ArchiveError
from weasis_link.oauth_client import AccessToken, ClientCredentialsTokenProvider, shared_token_provider


class QidoCredentials(Protocol):
    """What a connector puts in the `Authorization` header of its PACS requests."""

    def authorization(self, caller_token: str | None) -> str | None:
        """The header value for one request (None: send none); `caller_token` is the API caller's bearer token."""
        ...

    def renew(self, refused: str | None) -> bool:
        """After the PACS answered 401 to `refused`: whether asking again with new credentials may succeed."""
        ...


class _NoCredentials:
    def authorization(self, caller_token: str | None) -> str | None:  # noqa: ARG002 - the protocol's signature
        return None

    def renew(self, refused: str | None) -> bool:  # noqa: ARG002
        return False


class _BasicCredentials:
    def __init__(self, login: str, password: str) -> None:
        # RFC 7617 §2.1 allows UTF-8 ("charset"); servers that only know Latin-1 see the same bytes for ASCII.
        self._header = "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")

    def authorization(self, caller_token: str | None) -> str | None:  # noqa: ARG002
        return self._header

    def renew(self, refused: str | None) -> bool:  # noqa: ARG002
        return False


class _CallerToken:
    def authorization(self, caller_token: str | None) -> str | None:
        if not caller_token:
            raise ArchiveError("the archive needs the caller's token and the request carried none", "refused")
        return f"Bearer {caller_token}"

    def renew(self, refused: str | None) -> bool:  # noqa: ARG002
        return False  # the caller's token is what it is: a refusal is final


class _ServiceToken:
    def __init__(self, provider: ClientCredentialsTokenProvider) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._issued: dict[str, AccessToken] = {}

    def authorization(self, caller_token: str | None) -> str | None:  # noqa: ARG002
        token = self._provider.token()
        header = token.authorization
        with self._lock:
            self._issued = {header: token}  # only the latest is worth invalidating
        return header

    def renew(self, refused: str | None) -> bool:
        with self._lock:
            token = self._issued.pop(refused, None) if refused is not None else None
        if token is None:
            return False
        self._provider.invalidate(token)  # revoked or rotated early: the next request fetches a new one
        return True


def qido_credentials(config: QidoAuthenticationConfig) -> QidoCredentials:
    """The credentials a DICOM_WEB connector's `authentication` block describes."""
    if config.type == "BASIC":
        assert config.login is not None  # checked by the config model
        assert config.password is not None
        return _BasicCredentials(config.login, config.password.get_secret_value())
    if config.type == "BEARER_PASSTHROUGH":
        return _CallerToken()
    if config.type == "CLIENT_CREDENTIALS":
        assert config.client_credentials is not None
        return _ServiceToken(shared_token_provider(config.client_credentials))
    return _NoCredentials()
