"""How Weasis authenticates to each archive when it downloads the images: what goes into an arcQuery (baseUrl,
httpTags, webLogin), decided here once from `wado.authentication` (a connector's own `wado` block replaces the
global one):

- `force-basic: true` (or a basic block alone): the basic URL, and `webLogin` when a login is configured;
- else `oauth2`: its URL, and the caller's token as an `Authorization: Bearer` httpTag, or the connector's service
  token (client credentials) when `service-token` says so: always, or when the caller's token would die before the
  manifest does;
- else the plain WADO URL (`wado.url`, else the DICOMweb root).
The caller's token goes only where an oauth2 url asks for it.

The token-lifetime rule: Weasis downloads instance by instance with the injected token, for minutes, and never
refreshes it (weasis-facts takeaway 8). A token lasts when it expires no sooner than the manifest plus
TOKEN_EXPIRY_MARGIN_SECONDS; a token that does not last is reported (a WARN <Message> and a warning in the answer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from weasis_link import manifest as mf
from weasis_link.auth import Caller
from weasis_link.config import AppConfig, ClientCredentialsConfig, OAuth2WadoConfig
from weasis_link.errors import ArchiveError
from weasis_link.oauth_client import AccessToken, shared_token_provider
from weasis_link.settings import ServiceSettings
from weasis_link.storage import manifest_expiry

logger = logging.getLogger(__name__)


class TokenSource(Protocol):
    """A client's service tokens (oauth_client.ClientCredentialsTokenProvider)."""

    def token(self, *, min_validity_seconds: float = 0.0) -> AccessToken: ...


# The token source of a client: shared_token_provider (one per client and endpoint, per container).
TokenProviders = Callable[[ClientCredentialsConfig], TokenSource]


@dataclass(frozen=True, slots=True)
class WadoTarget:
    """Where and how Weasis fetches one archive's images: an arcQuery's baseUrl, httpTags and webLogin."""

    base_url: str
    http_tags: list[tuple[str, str]] = field(default_factory=list)
    web_login: str | None = None

    @property
    def injects_token(self) -> bool:
        return any(key == "Authorization" for key, _ in self.http_tags)


@dataclass(frozen=True, slots=True)
class WadoAccess:
    """What each archive's arcQuery carries for Weasis, and whether the tokens injected there last."""

    settings: ServiceSettings
    config: AppConfig
    clock: Callable[[], float] = time.time
    token_providers: TokenProviders = shared_token_provider

    # --- the arcQuery's target ------------------------------------------------------------------------------
    def target(self, archive_id: str, caller: Caller | None) -> WadoTarget:
        """The archive's arcQuery target; without a caller (a manifest that only carries messages), no token.
        For a DICOM_WEB connector in WADO_RS mode the baseUrl is its DICOMweb root (`wado-rs-url`, else `url`):
        Weasis appends `/studies/…` to it, so a (global) wado block's WADO-URI endpoint would be wrong there; that
        block still decides the credentials."""
        target = self._auth_target(archive_id, caller)
        connector = self.config.connector.config[archive_id]
        dicomweb = connector.dicom_web_connector
        if connector.manifest.mode == "WADO_RS" and dicomweb is not None:
            return WadoTarget(dicomweb.wado_rs_url or dicomweb.url, target.http_tags, target.web_login)
        return target

    def token_target(self, archive_id: str, caller: Caller) -> WadoTarget | None:
        """The target when the archive's configuration injects a token into its arcQuery; else None."""
        if archive_id not in self.config.connector.config:
            return None
        target = self.target(archive_id, caller)
        return target if target.injects_token else None

    def _auth_target(self, archive_id: str, caller: Caller | None) -> WadoTarget:
        connector = self.config.connector.config[archive_id]
        wado = self.config.wado_for(archive_id)
        auth = wado.authentication if wado else None
        if auth is not None:
            if auth.basic is not None and (auth.force_basic or auth.oauth2 is None):
                login = None
                if auth.basic.login and auth.basic.password is not None:
                    login = mf.web_login(auth.basic.login, auth.basic.password.get_secret_value())
                return WadoTarget(auth.basic.url, [], login)
            if auth.oauth2 is not None:
                if caller is None:
                    return WadoTarget(auth.oauth2.url)
                return WadoTarget(
                    auth.oauth2.url, [("Authorization", f"Bearer {self._injected_token(auth.oauth2, caller)}")]
                )
        if wado is not None and wado.url:
            return WadoTarget(wado.url)
        dicomweb = connector.dicom_web_connector
        assert dicomweb is not None  # AppConfig guarantees a URL for every other case
        return WadoTarget(dicomweb.wado_rs_url or dicomweb.url)

    def _injected_token(self, oauth2: OAuth2WadoConfig, caller: Caller) -> str:
        """The caller's token, or the connector's service token when configured to replace it (always, or when the
        caller's token does not last). A service token that cannot be obtained falls back to the caller's."""
        service_token = oauth2.service_token
        if service_token is None or (service_token.use != "always" and self.token_lasts(caller.expires_at)):
            return caller.token
        needed = self._horizon() - self.clock()
        try:
            return self.token_providers(service_token.client_credentials).token(min_validity_seconds=needed).value
        except ArchiveError as exc:
            logger.warning("service token unavailable; the caller's token is injected", extra={"reason": exc.detail})
            return caller.token

    # --- the token-lifetime rule ----------------------------------------------------------------------------
    def _horizon(self) -> float:
        """What an injected token must outlive: a manifest created now, plus the margin."""
        expires_at = manifest_expiry(self.clock(), self.settings.manifest_ttl_seconds)
        return expires_at.timestamp() + self.settings.token_expiry_margin_seconds

    def token_lasts(self, expires_at: float) -> bool:
        return expires_at >= self._horizon()

    def _short_token_text(self, whose: str, expires_at: float) -> str:
        left = max(0, int(expires_at - self.clock()))
        return f"The {whose} expires in {left} s, before the manifest does: Weasis may fail to load images."

    def _injects_caller_token(self, archive_id: str, caller: Caller) -> bool:
        """Whether the archive's manifest would carry the caller's own token (decided from configuration only)."""
        wado = self.config.wado_for(archive_id)
        auth = wado.authentication if wado else None
        if auth is None or auth.oauth2 is None or (auth.basic is not None and auth.force_basic):
            return False
        service_token = auth.oauth2.service_token
        return service_token is None or (service_token.use != "always" and self.token_lasts(caller.expires_at))

    def token_warning(self, caller: Caller, archive_ids: Sequence[str]) -> str | None:
        """The warning for a caller whose token dies before the manifest, when an archive would inject it."""
        if self.token_lasts(caller.expires_at) or not any(self._injects_caller_token(a, caller) for a in archive_ids):
            return None
        return self._short_token_text("access token", caller.expires_at)

    def warn_short_lived_tokens(self, queries: Sequence[mf.ArchiveQuery], caller: Caller, warnings: list[str]) -> None:
        """A WARN <Message> on each arcQuery whose injected token dies before the manifest; the text once in
        `warnings` (the JSON answer)."""
        for query in queries:
            value = next((v for k, v in query.http_tags if k == "Authorization"), None)
            if value is None:
                continue
            if value == f"Bearer {caller.token}":
                whose, title, expires_at = "access token", "Access token expires soon", float(caller.expires_at)
            else:
                service_expiry = self._service_token_expiry(query.arc_id)
                if service_expiry is None:
                    continue
                whose, title, expires_at = "service token", "Service token expires soon", service_expiry
            if self.token_lasts(expires_at):
                continue
            text = self._short_token_text(whose, expires_at)
            query.add_message(mf.Message(title, text, "WARN"))
            if text not in warnings:
                warnings.append(text)

    def _service_token_expiry(self, archive_id: str) -> float | None:
        wado = self.config.wado_for(archive_id)
        oauth2 = wado.authentication.oauth2 if wado and wado.authentication else None
        if oauth2 is None or oauth2.service_token is None:
            return None
        try:  # the provider's cached token: the one just injected
            return self.token_providers(oauth2.service_token.client_credentials).token().expires_at
        except ArchiveError:
            return None
