"""OAuth2 client-credentials tokens (RFC 6749 §4.4): the service's own token, for QIDO requests
(connectors/qido_credentials.py) and for the service token injected into manifests (archives/access.py).

```python
provider = shared_token_provider(config.client_credentials)   # one per token endpoint + client, per container
token = provider.token(min_validity_seconds=300)              # AccessToken(value, expires_at), cached
headers = {"Authorization": token.authorization}
provider.invalidate(token)                                     # after the resource server refused it (401)
```

Tokens are cached until `refresh_margin_seconds` before they expire and fetched again under a lock, so concurrent
callers share one token request. The token endpoint gets HTTP Basic client authentication (RFC 6749 §2.3.1, which
every server must accept) unless `auth-method: client_secret_post` says otherwise. Failures raise `ArchiveError`
subclasses (the token is needed to query an archive): unreachable -> `ArchiveUnavailable`, too slow ->
`ArchiveTimeout`, refused or garbled -> `ArchiveError`. Neither the secret nor a token ever reaches a message or a
log line.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, urlencode

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import Retry

from weasis_link.config import ClientCredentialsConfig
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable
from weasis_link.upstream_retry import gateway_retry, tls_options

# A token this close to its expiry is not handed out: the request it authenticates must still arrive in time.
DEFAULT_REFRESH_MARGIN_SECONDS: Final = 30.0
# RFC 6749 makes expires_in only RECOMMENDED; without it, reuse the token briefly rather than guess a long life.
DEFAULT_LIFETIME_SECONDS: Final = 60.0
_OAUTH_ERROR_CODE: Final = frozenset("abcdefghijklmnopqrstuvwxyz_")
_USER_AGENT: Final = "weasis-link"


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An access token and when it expires (epoch seconds, `time.time()` scale). The value never shows in a repr."""

    value: str = field(repr=False)
    expires_at: float

    @property
    def authorization(self) -> str:
        """The `Authorization` header value."""
        return f"Bearer {self.value}"

    def valid_for(self, seconds: float, now: float | None = None) -> bool:
        """Whether the token is still valid `seconds` from now."""
        return self.expires_at - (time.time() if now is None else now) > seconds


class ClientCredentialsTokenProvider:
    """OAuth2 client-credentials tokens (RFC 6749 §4.4) for one client at one token endpoint; thread-safe."""

    def __init__(
        self,
        config: ClientCredentialsConfig,
        *,
        http: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS,
    ) -> None:
        self._config = config
        self._http = http or urllib3.PoolManager(
            maxsize=2, headers={"User-Agent": _USER_AGENT}, **tls_options(config.token_url)
        )
        self._clock = clock
        self._margin = refresh_margin_seconds
        self._lock = threading.Lock()
        self._cached: AccessToken | None = None

    def token(self, *, min_validity_seconds: float = 0.0) -> AccessToken:
        """A token valid for at least the refresh margin (or `min_validity_seconds`, if longer) when possible.

        A fresh token is requested when the cached one expires sooner; if the server issues shorter-lived tokens
        than asked for, the fresh token is returned anyway: check `expires_at` when the lifetime matters.
        """
        wanted = max(self._margin, min_validity_seconds)
        cached = self._cached
        if cached is not None and cached.valid_for(wanted, self._clock()):
            return cached
        with self._lock:  # one token request at a time; the others take its result
            cached = self._cached
            if cached is not None and cached.valid_for(wanted, self._clock()):
                return cached
            self._cached = self._request_token()
            return self._cached

    def invalidate(self, token: AccessToken | None = None) -> None:
        """Forget the cached token (only if it is `token`, when given: another thread may have renewed it)."""
        with self._lock:
            if token is None or self._cached is token:
                self._cached = None

    # --- the token request ----------------------------------------------------------------------------------
    def _request_token(self) -> AccessToken:
        c = self._config
        form = {"grant_type": "client_credentials"}
        if c.scope:
            form["scope"] = c.scope
        if c.audience:
            form["audience"] = c.audience
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        secret = c.client_secret.get_secret_value()
        if c.auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and base64-encoded.
            pair = f"{quote(c.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")
        else:
            form |= {"client_id": c.client_id, "client_secret": secret}
        requested_at = self._clock()
        try:
            response = self._http.request(
                "POST",
                c.token_url,
                body=urlencode(form),
                headers=headers,
                timeout=urllib3.Timeout(connect=min(3.0, c.timeout_seconds), read=c.timeout_seconds),
                # A second token request is harmless, so a POST may be retried on connection errors and 502-504.
                retries=gateway_retry(Retry, "POST", 1, 0.2, read=0),
                redirect=False,
            )
        except (MaxRetryError, HTTPError) as exc:
            raise _transport_error(exc) from None
        return _parse_token_response(response.status, response.data, requested_at)


def _parse_token_response(status: int, body: bytes, requested_at: float) -> AccessToken:
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        answer = None
    if status != 200:
        code = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(code, str) and code and set(code) <= _OAUTH_ERROR_CODE:
            # Only a well-formed RFC 6749 §5.2 code is echoed: the body itself is the server's, not ours to show.
            raise ArchiveError(f"the token endpoint refused the client credentials ({code}, HTTP {status})", "refused")
        raise ArchiveError(f"the token endpoint answered HTTP {status}", "refused" if status < 500 else "bad-response")
    if not isinstance(answer, dict):
        raise ArchiveError("the token endpoint answered something that is not a JSON object")
    value = answer.get("access_token")
    token_type = answer.get("token_type")
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n "):
        raise ArchiveError("the token endpoint's answer has no usable access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ArchiveError("the token endpoint issued a token that is not a bearer token")
    lifetime = answer.get("expires_in", DEFAULT_LIFETIME_SECONDS)
    try:
        seconds = float(lifetime)
    except (TypeError, ValueError):
        seconds = DEFAULT_LIFETIME_SECONDS
    # Counted from when we asked, not when the answer arrived: the server's clock started no later than that.
    return AccessToken(value, requested_at + max(0.0, seconds))


def _transport_error(exc: Exception) -> ArchiveError:
    reason = exc.reason if isinstance(exc, MaxRetryError) else exc
    # urllib3 makes NewConnectionError a ConnectTimeoutError: a refused connection is not a timeout.
    if isinstance(reason, NewConnectionError) and not isinstance(reason.__cause__ or reason.__context__, TimeoutError):
        return ArchiveUnavailable("the token endpoint cannot be reached")
    if isinstance(reason, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
        return ArchiveTimeout("the token endpoint did not answer in time")
    if isinstance(reason, SSLError):
        return ArchiveUnavailable("the TLS handshake with the token endpoint failed")
    if isinstance(reason, OSError):
        return ArchiveUnavailable("the token endpoint cannot be reached")
    return ArchiveUnavailable(f"the token request failed ({type(reason).__name__})")


_shared: dict[tuple[str, ...], ClientCredentialsTokenProvider] = {}
_shared_lock = threading.Lock()


def shared_token_provider(config: ClientCredentialsConfig) -> ClientCredentialsTokenProvider:
    """The container-wide provider for this client at this endpoint: every user of the same client shares its
    cached token (one token request per expiry, not one per connector)."""
    key = (
        config.token_url,
        config.client_id,
        config.client_secret.get_secret_value(),
        config.scope or "",
        config.audience or "",
        config.auth_method,
    )
    with _shared_lock:
        provider = _shared.get(key)
        if provider is None:
            provider = _shared[key] = ClientCredentialsTokenProvider(config)
        return provider


def forget_shared_providers() -> None:
    """Drop every shared provider (their cached tokens and pools): after a SnapStart restore (weasis_link.snapstart)."""
    with _shared_lock:
        _shared.clear()
