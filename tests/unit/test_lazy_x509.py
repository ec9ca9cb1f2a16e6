"""cryptography.x509, which PyJWT imports at the top of jwt.algorithms, is executed only when used
(weasis_link.lazy_imports): tokens still verify, and a certificate still loads when PyJWT or anyone asks for one.
A fresh interpreter, as at cold start."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, sys
import weasis_link.lazy_imports  # first, as functions/api/app.py does
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
token = jwt.encode({"sub": "u"}, key, algorithm="RS256", headers={"kid": "k"})
jwk = jwt.PyJWK(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k"}, "RS256")
claims = jwt.decode(token, jwk.key, algorithms=["RS256"])
executed_after_decode = "cryptography.x509.base" in sys.modules

from cryptography import x509
certificate_loader = x509.load_pem_x509_certificate  # the first attribute access executes the module
print(json.dumps({
    "claims": claims,
    "executed_after_decode": executed_after_decode,
    "executed_after_use": "cryptography.x509.base" in sys.modules,
    "same_module": jwt.algorithms.x509 is x509,
    "loader": certificate_loader.__name__,
}))
"""


def test_pyjwt_verifies_without_executing_x509_and_x509_still_works_when_used() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(done.stdout)
    assert report["claims"] == {"sub": "u"}
    assert report["executed_after_decode"] is False
    assert report["executed_after_use"] is True and report["same_module"] is True
    assert report["loader"] == "load_pem_x509_certificate"
