"""docs/openapi.json is what Powertools generates from the routes: regenerate with `make openapi`."""

from __future__ import annotations

from weasis_link_dev.openapi import DOCUMENT, generate, render


def test_committed_openapi_document_matches_the_code() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == render(generate()), "docs/openapi.json is stale: run make openapi"


def test_every_route_documents_its_problems_and_auth() -> None:
    document = generate()
    assert set(document["paths"]) == {"/manifests", "/manifests/{manifest_id}", "/weasis", "/IHEInvokeImageDisplay"}
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert "404" in statuses or "401" in statuses, (path, method)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert set(response["content"]) == {"application/problem+json"}, (path, method, status)
