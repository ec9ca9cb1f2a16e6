"""Library code our cold start imports but never runs, executed only when something uses it.

`cryptography.x509`: PyJWT's `jwt.algorithms` imports it at the top for one call (`load_der_x509_certificate`, for
keys given as certificates); our issuers publish JWKs. Executing it costs about 180 M instructions (~15 % of a bare
boto3 cold start). It is registered with the standard library's LazyLoader before PyJWT is imported: the module is
executed at its first attribute access, so PyJWT behaves the same and pays only if it meets a certificate.

Applied on import, like init_phase, by the API function before anything imports PyJWT; a module already imported
or not installed is left as it is.
"""

from __future__ import annotations

import importlib.util
import sys

LAZY_MODULES = ("cryptography.x509",)


def lazy_module(name: str) -> None:
    """`name` imported now, executed at its first attribute access (importlib.util.LazyLoader)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)  # as the import system does once a submodule is loaded


for _name in LAZY_MODULES:
    lazy_module(_name)
