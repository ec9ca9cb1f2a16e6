"""Token attack matrix over HTTP: no forged, stale or misdirected token gets a manifest, each refusal carries the
right status and WWW-Authenticate challenge, nothing is written to S3, and no token reaches any log line.

The stack validates against a JWKS this test controls (short cache and cooldown, so rotation is testable), once with
that issuer alone and once with a second trusted issuer beside it (issue 11): a token signed by one issuer's key but
claiming the other is refused, and a token naming an issuer that is not trusted costs no network call."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from weasis_link_dev.dev_keys import DEV_AUDIENCE, DEV_ISSUER, DEV_SCOPE, JwksServer, SigningKey, access_token_claims
from weasis_link_dev.pytest_oidc import config_with_auth
from weasis_link_dev.pytest_stack import StackFactory, StackHandle

pytestmark = pytest.mark.e2e
QUERY = "/manifests?patientID=WLS-1001"
JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("attack-1")


@pytest.fixture(scope="module")
def jwks(key: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer([key]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate("issuer-b-1")


@pytest.fixture(scope="module")
def other_issuer(other_key: SigningKey) -> Iterator[JwksServer]:
    """A second trusted issuer, found by discovery (its JWKS server also serves the discovery document)."""
    server = JwksServer([other_key]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["one issuer", "several issuers"])
def stack(
    request: pytest.FixtureRequest,
    local_stack_factory: StackFactory,
    jwks: JwksServer,
    other_issuer: JwksServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> StackHandle:
    """The OAUTH_* issuer alone, or with a second issuer from the configuration file: every attack is refused the
    same way in both."""
    env = {"OAUTH_JWKS_URL": jwks.url, "OAUTH_JWKS_COOLDOWN_SECONDS": "1", "OAUTH_JWKS_CACHE_SECONDS": "2"}
    if request.param == "one issuer":
        return local_stack_factory(env=env)
    return local_stack_factory(config=several_issuers_config(other_issuer, tmp_path_factory.mktemp("issuers")), env=env)


def several_issuers_config(other_issuer: JwksServer, directory: Path) -> Path:
    entry = {"issuer": other_issuer.base_url, "audiences": [DEV_AUDIENCE], "required-scopes": [DEV_SCOPE]}
    return config_with_auth({"issuers": [entry]}, directory)


def claims(**overrides: Any) -> dict[str, Any]:
    return access_token_claims(**overrides)


def without(*names: str) -> Callable[[SigningKey], str]:
    def make(key: SigningKey) -> str:
        c = claims()
        for name in names:
            c.pop(name)
        return key.sign(c)

    return make


def tampered_payload(key: SigningKey) -> str:
    header, _, signature = key.sign(claims()).split(".")
    return ".".join([header, b64(claims(subject="admin", scope="weasis.launch admin")), signature])


def tampered_signature(key: SigningKey) -> str:
    token = key.sign(claims())
    last = "A" if token[-1] != "A" else "B"
    return token[:-1] + last


def alg_none(key: SigningKey) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': key.kid})}.{b64(claims())}."


def hs256_with_public_key(key: SigningKey) -> str:
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64({"alg": "HS256", "typ": "JWT", "kid": key.kid})
    body = b64(claims())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def ec_key_not_allowed(key: SigningKey) -> str:
    other = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims(), other, algorithm="ES256", headers={"kid": key.kid})


# name -> (token maker, status, challenge fragment)
ATTACKS: dict[str, tuple[Callable[[SigningKey], str | None], int, str]] = {
    "no token": (lambda k: None, 401, 'Bearer realm="weasis-link"'),
    "alg none": (alg_none, 401, 'error="invalid_token"'),
    "HS256 signed with the public key": (hs256_with_public_key, 401, 'error="invalid_token"'),
    "algorithm not allowed (RS512)": (lambda k: k.sign(claims(), alg="RS512"), 401, 'error="invalid_token"'),
    "algorithm not allowed (ES256)": (ec_key_not_allowed, 401, 'error="invalid_token"'),
    "expired": (lambda k: k.sign(claims(lifetime=-120)), 401, 'error="invalid_token"'),
    "expired beyond the leeway": (lambda k: k.sign(claims(now=int(time.time()) - 3700)), 401, 'error="invalid_token"'),
    "nbf in the future": (lambda k: k.sign(claims() | {"nbf": int(time.time()) + 600}), 401, 'error="invalid_token"'),
    "iat in the future": (lambda k: k.sign(claims() | {"iat": int(time.time()) + 600}), 401, 'error="invalid_token"'),
    "wrong iss": (lambda k: k.sign(claims(issuer="https://evil.example")), 401, 'error="invalid_token"'),
    "wrong aud": (lambda k: k.sign(claims(audience="another-api")), 401, 'error="invalid_token"'),
    "missing aud": (without("aud"), 401, 'error="invalid_token"'),
    "missing exp": (without("exp"), 401, 'error="invalid_token"'),
    "missing sub": (without("sub"), 401, 'error="invalid_token"'),
    "missing iat": (without("iat"), 401, 'error="invalid_token"'),
    "missing iss": (without("iss"), 401, 'error="invalid_token"'),
    "tampered payload": (tampered_payload, 401, 'error="invalid_token"'),
    "tampered signature": (tampered_signature, 401, 'error="invalid_token"'),
    "unknown kid": (lambda k: SigningKey.generate("unknown-kid").sign(claims()), 401, 'error="invalid_token"'),
    "no kid": (lambda k: jwt.encode(claims(), k.private_key, algorithm="RS256"), 401, 'error="invalid_token"'),
    "right kid, other key": (lambda k: SigningKey.generate(k.kid).sign(claims()), 401, 'error="invalid_token"'),
    "jku pointing elsewhere": (
        lambda k: SigningKey.generate("evil").sign(claims(), headers={"jku": "https://evil.example/jwks"}),
        401,
        'error="invalid_token"',
    ),
    "ID token (Keycloak typ=ID)": (lambda k: k.sign(claims(typ="ID")), 401, 'error="invalid_token"'),
    "ID token (Cognito token_use=id)": (lambda k: k.sign(claims(token_use="id")), 401, 'error="invalid_token"'),
    "ID token (nonce, no scope)": (
        lambda k: k.sign({n: v for n, v in claims(nonce="n-1").items() if n != "scope"}),
        401,
        'error="invalid_token"',
    ),
    "ID token type in header": (
        lambda k: k.sign(claims(), headers={"typ": "id_token+jwt"}),
        401,
        'error="invalid_token"',
    ),
    "missing scope": (lambda k: k.sign(claims(scope="openid profile")), 403, 'error="insufficient_scope"'),
    "oversized token": (lambda k: k.sign(claims(padding="x" * 9000)), 401, 'error="invalid_token"'),
    "non-JWT garbage": (lambda k: "not-a-jwt-at-all", 401, 'error="invalid_token"'),
    "JWT with four parts": (lambda k: k.sign(claims()) + ".extra", 401, 'error="invalid_token"'),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_is_refused(stack: StackHandle, key: SigningKey, attack: str) -> None:
    make, status, challenge = ATTACKS[attack]
    before = stack.object_keys()
    code, headers, body = stack.get(QUERY, make(key))
    assert code == status, body
    assert challenge in headers["WWW-Authenticate"]
    problem = json.loads(body)
    assert problem["status"] == status and headers["Content-Type"] == "application/problem+json"
    assert stack.object_keys() == before


def test_token_in_header_and_query_is_an_invalid_request(stack: StackHandle, key: SigningKey) -> None:
    token = key.sign(claims())
    code, headers, _ = stack.get(f"{QUERY}&access_token={token}", token)
    assert code == 400
    assert 'error="invalid_request"' in headers["WWW-Authenticate"]


def test_other_authorization_scheme_gets_a_bearer_challenge(stack: StackHandle) -> None:
    code, headers, _ = stack.get(QUERY, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert (code, headers["WWW-Authenticate"]) == (401, 'Bearer realm="weasis-link"')


@pytest.mark.parametrize(
    "make",
    [
        lambda k: k.sign(claims()),
        lambda k: k.sign(claims(audience=["other", "weasis-link"])),
        lambda k: k.sign(claims(scope="") | {"scp": ["weasis.launch"]}),
        lambda k: k.sign(claims(), headers={"typ": "at+jwt"}),
    ],
    ids=["plain", "audience list", "scp claim", "RFC 9068 typ"],
)
def test_legitimate_tokens_are_accepted(stack: StackHandle, key: SigningKey, make: Callable[[SigningKey], str]) -> None:
    assert stack.get(QUERY, make(key))[0] == 200


def test_a_token_inside_the_leeway_authenticates_but_gets_no_capability(stack: StackHandle, key: SigningKey) -> None:
    # Expired 10 s ago, inside the 30 s leeway: its signature and claims pass, but a manifest may not outlive it
    # (capability.py), so it is told to refresh rather than that it is invalid.
    status, _, body = stack.get(QUERY, key.sign(claims(now=int(time.time()) - 3600 - 10)))
    assert status == 401 and json.loads(body)["type"] == "urn:weasis-link:problem:token-expires-too-soon"


def test_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_cooldown(
    stack: StackHandle, jwks: JwksServer, key: SigningKey
) -> None:
    assert stack.get(QUERY, key.sign(claims()))[0] == 200  # the key set is cached
    time.sleep(1.2)  # past the cooldown: the first unknown kid may refetch, the rest may not
    fetches = jwks.fetches
    started = time.monotonic()
    codes = {stack.get(QUERY, SigningKey.generate(f"flood-{i}").sign(claims()))[0] for i in range(40)}
    assert codes == {401}
    elapsed = time.monotonic() - started
    assert jwks.fetches - fetches <= 1 + int(elapsed / 1.0)


def test_jwks_outage_is_503_not_500(local_stack_factory: StackFactory, key: SigningKey) -> None:
    dead = JwksServer([key]).start()
    dead.down = True
    stack = local_stack_factory(env={"OAUTH_JWKS_URL": dead.url})
    try:
        code, _, body = stack.get(QUERY, key.sign(claims()))
        assert code == 503, body
        assert json.loads(body)["type"] == "urn:weasis-link:problem:identity-provider-unavailable"
        dead.stop()  # now the port refuses connections
        assert stack.get(QUERY, key.sign(claims()))[0] == 503
        assert stack.object_keys() == []
    finally:
        stack.stop()


def test_key_rotation(local_stack_factory: StackFactory) -> None:
    old, new = SigningKey.generate("rot-old"), SigningKey.generate("rot-new")
    server = JwksServer([old]).start()
    stack = local_stack_factory(
        env={"OAUTH_JWKS_URL": server.url, "OAUTH_JWKS_COOLDOWN_SECONDS": "1", "OAUTH_JWKS_CACHE_SECONDS": "2"}
    )
    try:
        assert stack.get(QUERY, old.sign(claims()))[0] == 200
        server.keys = [old, new]  # the issuer publishes a new key
        time.sleep(1.2)  # past the cooldown
        assert stack.get(QUERY, new.sign(claims()))[0] == 200  # unknown kid -> refetch -> accepted
        server.keys = [new]  # the old key is withdrawn
        time.sleep(2.5)  # past the key set's lifespan
        assert stack.get(QUERY, old.sign(claims()))[0] == 401
        assert stack.get(QUERY, new.sign(claims()))[0] == 200
    finally:
        stack.stop()
        server.stop()


def test_no_token_reaches_any_log_line(stack: StackHandle, key: SigningKey) -> None:
    tokens = [t for make, _, _ in ATTACKS.values() if (t := make(key))] + [key.sign(claims())]
    for token in tokens[:10]:
        stack.get(QUERY, token)
        stack.get(f"{QUERY}&access_token={token}")
    log = stack.log()
    assert log.strip(), "the stack logged nothing: the check would be vacuous"
    assert not JWT_LIKE.search(log)
    for token in tokens:
        assert token not in log


# --- several trusted issuers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def several(
    local_stack_factory: StackFactory,
    jwks: JwksServer,
    other_issuer: JwksServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> StackHandle:
    env = {"OAUTH_JWKS_URL": jwks.url, "OAUTH_JWKS_COOLDOWN_SECONDS": "1", "OAUTH_JWKS_CACHE_SECONDS": "2"}
    return local_stack_factory(config=several_issuers_config(other_issuer, tmp_path_factory.mktemp("several")), env=env)


def test_each_issuer_is_accepted_with_its_own_key(
    several: StackHandle, key: SigningKey, other_key: SigningKey, other_issuer: JwksServer
) -> None:
    assert several.get(QUERY, key.sign(claims()))[0] == 200
    assert several.get(QUERY, other_key.sign(claims(issuer=other_issuer.base_url)))[0] == 200


@pytest.mark.parametrize("kid", ["same kid", "own kid"])
def test_a_token_signed_by_one_issuers_key_claiming_the_other_is_refused(
    several: StackHandle, key: SigningKey, other_key: SigningKey, other_issuer: JwksServer, kid: str
) -> None:
    # A's key, B's iss: B's JWKS does not hold it, whatever kid the forger writes.
    forged_b = SigningKey(key.private_key, other_key.kid if kid == "same kid" else key.kid)
    forged_a = SigningKey(other_key.private_key, key.kid if kid == "same kid" else other_key.kid)
    for token in (forged_b.sign(claims(issuer=other_issuer.base_url)), forged_a.sign(claims(issuer=DEV_ISSUER))):
        code, headers, _ = several.get(QUERY, token)
        assert code == 401
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]


def test_an_unknown_issuer_costs_no_network_call(
    several: StackHandle, key: SigningKey, jwks: JwksServer, other_issuer: JwksServer
) -> None:
    assert several.get(QUERY, key.sign(claims()))[0] == 200  # both issuers' keys as warm as they get
    fetches = (jwks.fetches, other_issuer.fetches)
    started = time.monotonic()
    codes = set()
    for i in range(60):  # a flood of tokens from issuers nobody trusts, some looking like a trusted one
        for iss in (f"https://idp-{i}.example", f"{other_issuer.base_url}/{i}", f"{DEV_ISSUER}.evil-{i}.example"):
            code, _, body = several.get(QUERY, key.sign(claims(issuer=iss)))
            codes.add(code)
            assert b"not trusted" in body
    assert codes == {401}
    assert (jwks.fetches, other_issuer.fetches) == fetches
    assert time.monotonic() - started < 60
