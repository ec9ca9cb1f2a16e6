"""Library code our cold start imports but never runs, executed only when something uses it.

- `cryptography.x509`: PyJWT's `jwt.algorithms` imports it at the top for one call (`load_der_x509_certificate`, for
keys given as certificates); our issuers publish JWKs. Executing it costs about 130 M instructions (~11 % of a bare
  boto3 cold start). It is registered with the standard library's LazyLoader before PyJWT is imported: the module is
  executed at its first attribute access, so PyJWT behaves the same and pays only if it meets a certificate.
- `aws_lambda_powertools.event_handler`: its package `__init__` imports every resolver (AppSync with asyncio,
  Bedrock, VPC Lattice...) for names we never use. `deferred_package` lets the submodules we use
  (`event_handler.api_gateway`...) be imported without running it; a name the `__init__` re-exports from a submodule
  is taken from that submodule (the same object the `__init__` binds), any other name runs the `__init__` first.
- `aws_lambda_powertools.utilities.data_classes`: its `__init__` imports some forty event classes (Kafka, SES,
  CodePipeline with zipfile...) for the resolvers' `from ...data_classes import APIGatewayProxyEventV2, ...`;
  deferred the same way, only the event modules the resolvers name are imported.

Applied on import, like init_phase, by the API function before anything imports PyJWT; a module already imported
or not installed is left as it is.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from importlib.abc import InspectLoader
from types import ModuleType

LAZY_MODULES = ("cryptography.x509",)
DEFERRED_PACKAGES = ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.data_classes")


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
    _attach(name, module)


def deferred_package(name: str) -> None:
    """The package `name` registered without running its `__init__` (PEP 562 module __getattr__ for its names)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or not isinstance(spec.loader, InspectLoader) or spec.submodule_search_locations is None:
        return
    source = spec.loader.get_source(name)
    if source is None:
        return
    loader = spec.loader
    reexports = _reexports(name, source)
    module = importlib.util.module_from_spec(spec)

    def __getattr__(attribute: str) -> object:  # noqa: N807 - the module-level hook of PEP 562
        if attribute.startswith("__") and attribute != "__all__":
            raise AttributeError(attribute)  # copy, pickle and typing probe dunders: no reason to load
        if attribute in reexports:
            submodule, original = reexports[attribute]
            return getattr(importlib.import_module(submodule), original)
        if importlib.util.find_spec(f"{name}.{attribute}") is not None:
            return importlib.import_module(f"{name}.{attribute}")  # `from package import submodule`
        del module.__dict__["__getattr__"]  # once: the real __init__ defines the rest
        loader.exec_module(module)
        return getattr(module, attribute)

    module.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = module
    _attach(name, module)
    for attribute, (submodule, original) in reexports.items():
        if submodule == f"{name}.{attribute}":  # `from .event_source import event_source`: importing the submodule
            # binds the package's attribute to it, so __getattr__ would never be asked: bound now, as the __init__ does
            setattr(module, attribute, getattr(importlib.import_module(submodule), original))


def _reexports(package: str, source: str) -> dict[str, tuple[str, str]]:
    """Name -> (submodule, its name there) for each top-level `from <package>.<sub> import name` of the `__init__`."""
    found: dict[str, tuple[str, str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            module = node.module if node.level == 0 else f"{package}.{node.module}" if node.level == 1 else ""
            if module.startswith(package + "."):
                for alias in node.names:
                    found[alias.asname or alias.name] = (module, alias.name)
    return found


def _attach(name: str, module: ModuleType) -> None:
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)  # as the import system does once a submodule is loaded


for _name in LAZY_MODULES:
    lazy_module(_name)
for _name in DEFERRED_PACKAGES:
    deferred_package(_name)
