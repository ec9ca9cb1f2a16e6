"""The development identity provider: an RSA signing key kept in .local/, its JWKS, and tokens signed with it.

`make token` prints a token the local stack accepts; tests mint their own variants (expired, wrong audience...).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from weasis_link_dev.loopback_http import Answer, LoopbackServer, Request

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
KEY_FILE: Final = REPO_ROOT / ".local" / "dev-signing-key.pem"
DEV_ISSUER: Final = "https://dev-issuer.weasis-link.invalid"
DEV_AUDIENCE: Final = "weasis-link"
DEV_SCOPE: Final = "weasis.launch"


@dataclass
class SigningKey:
    private_key: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid or uuid.uuid4().hex[:16])

    @classmethod
    def load_or_create(cls, path: Path = KEY_FILE) -> SigningKey:
        """The persistent development key: the running stack and `make token` share it. Created atomically: the key
        is written whole to a private temporary file and linked into place, so of two stacks started together on a
        fresh clone one wins and both load its key (never a half-written file)."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = cls.generate("dev-1")
            pem = key.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
                with contextlib.suppress(FileExistsError):  # another process linked its key first: use that one
                    os.link(tmp, path)
            finally:
                os.unlink(tmp)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        return cls(loaded, "dev-1")

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return jwk | {"kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None, alg: str = "RS256") -> str:
        return jwt.encode(dict(claims), self.private_key, algorithm=alg, headers={"kid": self.kid, **(headers or {})})


def access_token_claims(
    *,
    issuer: str = DEV_ISSUER,
    audience: str | list[str] = DEV_AUDIENCE,
    scope: str = DEV_SCOPE,
    subject: str = "dev-user",
    lifetime: int = 3600,
    now: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    t = int(time.time()) if now is None else now
    return {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "scope": scope,
        "iat": t,
        "nbf": t,
        "exp": t + lifetime,
        "jti": uuid.uuid4().hex,
        **extra,
    }


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 whose key set tests can change (rotation) or break (outage)."""

    keys: list[SigningKey]
    host: str = "127.0.0.1"
    port: int = 0
    fetches: int = 0  # every request, JWKS or discovery
    discovery_fetches: int = 0
    down: bool = False
    # The OpenID discovery document served at /.well-known/openid-configuration; None: the one naming this server
    # (issuer = base_url, jwks_uri = url). Tests replace it to serve a lying or broken document.
    discovery: dict[str, Any] | None = None
    _server: LoopbackServer | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        """Also the issuer its discovery document names."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    def discovery_document(self) -> dict[str, Any]:
        if self.discovery is not None:
            return self.discovery
        return {"issuer": self.base_url, "jwks_uri": self.url}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def _answer(self, request: Request) -> Answer:
        self.fetches += 1
        if self.down:
            return Answer(503)
        if request.path == "/.well-known/openid-configuration":
            self.discovery_fetches += 1
            return Answer.json(self.discovery_document())
        return Answer.json(self.jwks())

    def start(self) -> JwksServer:
        self._server = LoopbackServer(self._answer, port=self.port).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def main() -> None:
    """`make token`: a one-hour access token for the local stack."""
    print(SigningKey.load_or_create().sign(access_token_claims()))


if __name__ == "__main__":
    main()
