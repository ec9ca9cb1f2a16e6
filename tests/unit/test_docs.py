"""The docs stay true to the code: every setting, template parameter and configuration key is documented."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from weasis_link.config import AppConfig
from weasis_link.identity import AuthConfig
from weasis_link.settings import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def config_keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name.replace("_", "-"))
        for arg in typing.get_args(field.annotation) or (field.annotation,):
            for inner in (arg, *typing.get_args(arg)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    keys |= config_keys(inner)
    return keys


def template_parameters() -> set[str]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template: dict[str, Any] = yaml.load((ROOT / "template.yaml").read_text(), Loader)  # noqa: S506 - SafeLoader
    return set(template["Parameters"])


def test_every_environment_variable_is_documented() -> None:
    missing = [name for name in ENVIRONMENT if f"`{name}`" not in CONFIGURATION]
    assert missing == []


def test_every_template_parameter_is_documented() -> None:
    missing = sorted(p for p in template_parameters() if f"`{p}`" not in CONFIGURATION and f"{p}`" not in CONFIGURATION)
    assert missing == []


def test_every_configuration_key_is_documented() -> None:
    missing = sorted(k for k in config_keys(AppConfig) if k not in CONFIGURATION)
    assert missing == []


def test_readme_starts_with_run_then_test_then_deploy() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    run, test, deploy = readme.index("make run"), readme.index("make test"), readme.index("sam build && sam deploy")
    assert run < test < deploy
    assert "docs/configuration.md" in readme


def test_the_architecture_names_every_module_of_the_layer() -> None:
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    package = ROOT / "layers" / "shared" / "weasis_link"
    modules = {p.name for p in package.rglob("*.py") if p.name != "__init__.py"}
    assert sorted(m for m in modules if m not in architecture) == []


def test_the_security_guide_has_a_valid_example_of_every_audit_event() -> None:
    from weasis_link_dev.audit_checks import balp_problems, kind, validate_fhir

    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    examples = [json.loads(block) for block in re.findall(r"```json audit-example\n(.*?)\n```", security, re.S)]
    for event in examples:
        validate_fhir(event)
        assert balp_problems(event) == []
    assert sorted(kind(e) for e in examples) == ["manifest-issued", "manifest-redeemed", "query", "refusal", "upload"]


def test_the_architecture_points_at_modules_that_exist() -> None:
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:weasis_link|functions)/[a-z_/]+\.py)`", architecture))
    assert {"functions/api/app.py", "functions/builder/app.py", "functions/cleanup/app.py"} <= paths
    layer = ROOT / "layers" / "shared"
    missing = [p for p in paths if not ((ROOT / p).is_file() or (layer / p).is_file())]
    assert missing == []
    assert len(paths) >= 10


IDENTITY_PROVIDERS = (ROOT / "docs" / "identity-providers.md").read_text(encoding="utf-8")


def test_every_key_of_the_auth_block_is_in_the_identity_provider_guide() -> None:
    keys = config_keys(AuthConfig)
    assert "require-access-token-type" in keys
    assert sorted(k for k in keys if f"`{k}`" not in IDENTITY_PROVIDERS) == []
    assert sorted(k for k in keys if f"`{k}`" not in CONFIGURATION and k not in CONFIGURATION) == []


def test_every_configuration_block_of_the_identity_provider_guide_is_valid() -> None:
    """The recipes are copied by integrators: each must load as an `auth:` block as written."""
    blocks = re.findall(r"```yaml\n(.*?)```", IDENTITY_PROVIDERS, re.DOTALL)
    assert len(blocks) >= 10
    for block in blocks:
        AuthConfig.model_validate(yaml.safe_load(block)["auth"])


def test_the_identity_provider_guide_covers_each_provider_and_is_linked() -> None:
    headings = re.findall(r"^## (.+)$", IDENTITY_PROVIDERS, re.MULTILINE)
    for provider in ("Cognito", "Entra ID", "Keycloak", "Auth0", "Okta", "Google", "Any other OpenID provider"):
        assert any(provider in h for h in headings), provider
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "(identity-providers.md)" in deploy and "identity-providers.md" in CONFIGURATION
    # The old advice ("the client id" as Keycloak's audience) is what a default Keycloak token does not satisfy.
    assert "or the client id" not in deploy
