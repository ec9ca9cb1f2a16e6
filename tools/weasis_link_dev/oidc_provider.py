"""A real, certified OpenID provider on loopback for tests: node's `oidc-provider` (npm), pinned, installed into a
cache folder on first use, started with a configuration written by the test, stopped afterwards.

It issues JWT access tokens (`typ: at+jwt`, RFC 9068) for resource indicators (RFC 8707) by client credentials,
and by the authorization-code flow, driven headlessly through its development login and consent forms (PKCE S256).
Its discovery document and JWKS are its own; `rotate_keys()` restarts it, on the same port, with other keys.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import http.cookiejar
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Final

from jwt.algorithms import RSAAlgorithm

from weasis_link_dev.dev_keys import REPO_ROOT, SigningKey
from weasis_link_dev.loopback_http import unused_port

OIDC_PROVIDER_VERSION: Final = "9.13.3"
REDIRECT_URI: Final = "http://127.0.0.1/callback"  # never contacted: the flow stops at the redirect
STARTUP_SECONDS: Final = 30

# The provider, configured entirely by the JSON file given as argument (written by OidcProvider.start).
PROVIDER_SCRIPT: Final = """\
import { readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  scopes: cfg.scopes,
  jwks: { keys: cfg.keys },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => {
        const server = cfg.resources[resource];
        if (!server) throw new errors.InvalidTarget();
        return {
          scope: server.scope,
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: cfg.ttl[client.clientId] ?? 3600,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    Interaction: 600, Session: 3600, Grant: 3600, IdToken: 3600, AuthorizationCode: 60,
    ClientCredentials: (ctx, token, client) => cfg.ttl[client.clientId] ?? 3600,
    AccessToken: (ctx, token, client) => cfg.ttl[client.clientId] ?? 3600,
  },
});
provider.listen(cfg.port, '127.0.0.1', () => { console.log('oidc-provider ready'); });
"""


def cache_dir() -> Path:
    base = os.environ.get("WEASIS_LINK_CACHE")
    return (Path(base) if base else REPO_ROOT / ".cache") / f"oidc-provider-{OIDC_PROVIDER_VERSION}"


def ensure_installed() -> Path:
    """The folder holding node_modules/oidc-provider and the provider script; npm installs it once (locked)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        subprocess.run([str(REPO_ROOT / "tools" / "ensure-debian-packages"), "nodejs", "npm"], check=True)
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = root / "node_modules" / "oidc-provider" / "package.json"
        if not installed.exists() or json.loads(installed.read_text())["version"] != OIDC_PROVIDER_VERSION:
            (root / "package.json").write_text(json.dumps({"name": "weasis-link-test-oidc", "private": True}))
            done = subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    f"oidc-provider@{OIDC_PROVIDER_VERSION}",
                ],
                cwd=root,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"npm could not install oidc-provider into {root}:\n{done.stderr[-3000:]}")
        script = root / "provider.mjs"
        if not script.exists() or script.read_text() != PROVIDER_SCRIPT:
            script.write_text(PROVIDER_SCRIPT)
    return root


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_ttl: int | None = None  # access-token lifetime in seconds (default one hour)
    # How the client must authenticate at the token endpoint; the provider refuses any other method.
    auth_method: str = "client_secret_basic"


@dataclass(frozen=True)
class CodeFlowTokens:
    access_token: str
    id_token: str


class OidcProvider:
    def __init__(
        self,
        clients: list[Client],
        resources: dict[str, str],
        *,
        scopes: tuple[str, ...] = ("openid", "weasis.launch"),
    ) -> None:
        """`resources`: resource indicator (the access token's `aud`) -> the scopes it grants."""
        self.clients = {c.client_id: c for c in clients}
        self.resources = resources
        self.scopes = scopes
        self.keys = [SigningKey.generate(f"op-{secrets.token_hex(4)}")]
        self.port = unused_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="weasis-link-oidc-"))
        self.log_path = self.workdir / "provider.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OidcProvider:
        root = ensure_installed()
        config = self.workdir / "provider.json"
        config.write_text(json.dumps(self._configuration()))
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            ["node", str(root / "provider.mjs"), str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=root
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while "oidc-provider ready" not in self.log_path.read_text(errors="replace"):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"oidc-provider did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        self.log_path.write_bytes(b"")  # "ready" is seen once per start
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def rotate_keys(self) -> None:
        """The provider replaces its signing key: restarted on the same port (and issuer) with a new key only."""
        self.stop()
        self.keys = [SigningKey.generate(f"op-{secrets.token_hex(4)}")]
        self.start()

    def _configuration(self) -> dict[str, Any]:
        private_jwks = []
        for key in self.keys:
            jwk = json.loads(RSAAlgorithm.to_jwk(key.private_key))
            private_jwks.append(jwk | {"kid": key.kid, "use": "sig", "alg": "RS256"})
        return {
            "issuer": self.issuer,
            "port": self.port,
            "keys": private_jwks,
            "scopes": list(self.scopes),
            "resources": {r: {"scope": s} for r, s in self.resources.items()},
            "ttl": {c.client_id: c.token_ttl for c in self.clients.values() if c.token_ttl is not None},
            "clients": [
                {
                    "client_id": c.client_id,
                    "client_secret": c.secret,
                    "token_endpoint_auth_method": c.auth_method,
                    "grant_types": ["client_credentials", "authorization_code"],
                    "response_types": ["code"],
                    "redirect_uris": [REDIRECT_URI],
                    "scope": " ".join(self.scopes),
                }
                for c in self.clients.values()
            ],
        }

    # --- tokens ---------------------------------------------------------------------------------------------

    def _token_request(self, client_id: str, form: dict[str, str]) -> dict[str, Any]:
        client = self.clients[client_id]
        basic = base64.b64encode(f"{client.client_id}:{client.secret}".encode()).decode()
        request = urllib.request.Request(
            f"{self.issuer}/token",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:
            with exc:
                raise RuntimeError(f"token request refused: {exc.read().decode(errors='replace')}") from None
        return answer

    def client_credentials(self, client_id: str, resource: str, scope: str = "weasis.launch") -> str:
        """A JWT access token (client credentials, RFC 8707 resource indicator)."""
        form = {"grant_type": "client_credentials", "resource": resource, "scope": scope}
        return str(self._token_request(client_id, form)["access_token"])

    def authorization_code(
        self, client_id: str, resource: str, *, user: str = "alice", scope: str = "openid weasis.launch"
    ) -> CodeFlowTokens:
        """The authorization-code flow as a browser does it: /auth, the login form, the consent form, the redirect
        with the code (not followed), then the token request with the PKCE verifier."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urllib.parse.urlencode(
            {
                "client_id": client_id,
                "response_type": "code",
                "redirect_uri": REDIRECT_URI,
                "scope": scope,
                "resource": resource,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": secrets.token_urlsafe(8),
            }
        )
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _StopAtCallback
        )
        try:
            page = browser.open(f"{self.issuer}/auth?{query}", timeout=10)
            for _ in range(5):  # login, then consent
                html, url = page.read().decode(), page.url
                forms = _Forms()
                forms.feed(html)
                if not forms.forms:
                    raise RuntimeError(f"no form on {url}")
                action, fields = forms.forms[0]
                if "login" in fields:
                    fields |= {"login": user, "password": "any"}  # devInteractions accepts any password
                body = urllib.parse.urlencode(fields).encode()
                page = browser.open(urllib.parse.urljoin(url, action), body, timeout=10)
            raise RuntimeError("the authorization-code flow did not reach the redirect")
        except _Callback as done:
            params = urllib.parse.parse_qs(urllib.parse.urlsplit(done.url).query)
        form = {
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "resource": resource,
        }
        answer = self._token_request(client_id, form)
        return CodeFlowTokens(str(answer["access_token"]), str(answer["id_token"]))


class _Callback(Exception):  # control flow: the redirect to the client carries the code
    def __init__(self, url: str) -> None:
        super().__init__("redirected to the client")
        self.url = url


class _StopAtCallback(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if newurl.startswith(REDIRECT_URI):
            raise _Callback(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Forms(HTMLParser):
    """The forms of a page: (action, {input name: value})."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append((a.get("action") or "", {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][str(a["name"])] = a.get("value") or ""
