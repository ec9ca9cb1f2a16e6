"""weasis_link.http.resolver_cache: Powertools' per-request dependency trees and type hints are built once, at cold
start, and the requests use them (no miss, no compile() of string annotations, after the routes are prepared)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Depends, depends

from weasis_link.http import resolver_cache


def tenant() -> str:
    return "t1"


def tenant_name(value: Annotated[str, Depends(tenant)]) -> str:
    return value.upper()


TenantDep = Annotated[str, Depends(tenant_name)]


def http_event(path: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": f"GET {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {},
        "requestContext": {
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"},
            "domainName": "example.org",
            "stage": "$default",
            "requestId": "r",
        },
        "isBase64Encoded": False,
    }


@pytest.fixture
def app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.get("/tenant")
    def get_tenant(name: TenantDep) -> dict[str, str]:
        return {"tenant": name}

    return app


def misses() -> tuple[int, int]:
    trees = depends.build_dependency_tree.cache_info()  # type: ignore[attr-defined]
    return trees.misses, resolver_cache._cached_type_hints.cache_info().misses


def test_requests_reuse_the_trees_and_hints_built_at_cold_start(app: APIGatewayHttpResolver) -> None:
    assert resolver_cache.cache_route_dependencies(app) == 1
    # The first request also inspects Powertools' validation middlewares once (it keeps their result itself).
    assert app.resolve(http_event("/tenant"), {})["statusCode"] == 200
    prepared = misses()
    hits = resolver_cache._cached_type_hints.cache_info().hits
    for _ in range(3):
        response = app.resolve(http_event("/tenant"), {})
        assert response["statusCode"] == 200
        assert '"tenant":"T1"' in response["body"].replace(" ", "")
    assert misses() == prepared  # nothing built or evaluated per request
    assert resolver_cache._cached_type_hints.cache_info().hits >= hits + 3  # ... but read from the cache


def test_preparing_twice_installs_the_cache_once(app: APIGatewayHttpResolver) -> None:
    resolver_cache.cache_route_dependencies(app)
    cached = depends.build_dependency_tree
    resolver_cache.cache_route_dependencies(app)
    assert depends.build_dependency_tree is cached


@pytest.fixture
def api(service_env: dict[str, str]) -> Iterator[ModuleType]:
    saved = dict(os.environ)
    os.environ.update(service_env)
    try:
        yield importlib.import_module("functions.api.app")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_the_api_function_prepares_every_route_at_cold_start(api: ModuleType) -> None:
    routes = [*api.app._static_routes, *api.app._dynamic_routes]
    assert len(routes) == 5
    prepared = misses()
    for route in routes:
        depends.build_dependency_tree(route.func)
    assert misses() == prepared
