"""Powertools' per-request work that depends only on the routes, done once at cold start.

Powertools 3.37 resolves `Depends()` parameters on every request by rebuilding the route's dependency tree
(`event_handler.depends.build_dependency_tree`) and reading each dependency's type hints again; with
`from __future__ import annotations` every `typing.get_type_hints` call evaluates the string annotations anew
(41 compile() calls per GET /manifests, about a quarter of a warm request without the S3 PUT). Both depend only on
the functions, which never change in a running function: they are memoised here (the module looks both names up at
call time), and every route's tree is built while the function initialises."""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import depends
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

_original_type_hints = typing.get_type_hints  # what depends.py imported
_original_tree = depends.build_dependency_tree


@functools.cache
def _cached_type_hints(obj: Callable[..., Any], include_extras: bool) -> dict[str, Any]:
    return _original_type_hints(obj, include_extras=include_extras)


def _type_hints(
    obj: Callable[..., Any], globalns: Any = None, localns: Any = None, include_extras: bool = False
) -> dict[str, Any]:
    if globalns is None and localns is None:
        return _cached_type_hints(obj, include_extras)
    return _original_type_hints(obj, globalns, localns, include_extras)


def cache_route_dependencies(app: ApiGatewayResolver) -> int:
    """Memoise Powertools' dependency trees and type hints, and build them now for every route of `app`.
    Returns the number of routes prepared."""
    if depends.build_dependency_tree is _original_tree:
        depends.get_type_hints = _type_hints  # type: ignore[attr-defined,assignment]
        depends.build_dependency_tree = functools.cache(_original_tree)
    routes = [*app._static_routes, *app._dynamic_routes]  # no public listing of a resolver's routes
    for route in routes:
        tree = depends.build_dependency_tree(route.func)
        _prepare(tree)
    return len(routes)


def _prepare(tree: depends.DependencyTree) -> None:
    """The hints solve_dependencies reads for each dependency (to inject a Request), resolved now."""
    for node in tree.dependencies:
        _type_hints(node.depends.dependency)
        _prepare(node.dependant)
