"""The operations side stays true: the runbook in docs/deploy.md covers every alarm of template.yaml, its metrics
table names exactly the metrics the code emits, samconfig.toml's environments pass the template's parameter
checks, and the example pipeline deploys staging, tests it, then production, with roles assumed by OIDC."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from weasis_link import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
SAMCONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
PIPELINE: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "pipeline" / "github-actions.yml").read_text())


def template() -> dict[str, Any]:
    class Loader(yaml.SafeLoader):
        pass

    def tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node, deep=True)}
        assert isinstance(node, yaml.MappingNode)
        return {suffix: loader.construct_mapping(node, deep=True)}

    Loader.add_multi_constructor("!", tag)
    document: dict[str, Any] = yaml.load((ROOT / "template.yaml").read_text(), Loader)  # noqa: S506 - SafeLoader
    return document


def section(title: str) -> str:
    start = DEPLOY.index(title)
    following = DEPLOY.find("\n## ", start + 1)
    return DEPLOY[start : following if following != -1 else None]


def emitted_metrics() -> set[str]:
    names = {v for k, v in vars(metrics).items() if k.isupper() and not k.startswith("DEFAULT_") and isinstance(v, str)}
    names |= set(metrics.BUILD_OUTCOME_METRICS.values())
    api = (ROOT / "functions" / "api" / "app.py").read_text()
    names |= set(re.findall(r'(?:add_metric|single_metric)\(\s*name="(\w+)"', api))
    return names | {"ColdStart"}  # Powertools' capture_cold_start_metric


def test_the_runbook_covers_every_alarm() -> None:
    runbook = section("## Runbook: the alarms")
    alarm_names = [
        r["Properties"]["AlarmName"]["Sub"].removeprefix("${AWS::StackName}-")
        for r in template()["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert len(alarm_names) == 18
    assert sorted(n for n in alarm_names if f"`{n}`" not in runbook) == []
    assert "18 CloudWatch alarms" in DEPLOY


def test_the_metrics_table_names_exactly_what_the_code_emits() -> None:
    table = section("- **Metrics**").split("A failed or timed-out build")[0]
    documented = set(re.findall(r"`([A-Z][A-Za-z]+)`", table))
    assert documented == emitted_metrics()


def test_no_kms_endpoint_is_asked_for() -> None:
    # The functions never call KMS: S3 and Secrets Manager / SSM decrypt on their side.
    assert "interface endpoint for `kms`" not in DEPLOY


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_samconfig_environments_pass_the_template_checks(environment: str) -> None:
    parameters = template()["Parameters"]
    deploy = SAMCONFIG[environment]["deploy"]["parameters"]
    assert len(deploy["stack_name"]) <= 56  # function names are <stack>-builder (64 characters at most)
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    overrides = dict(o.split("=", 1) for o in deploy["parameter_overrides"])
    for name, value in overrides.items():
        parameter = parameters[name]
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], value), (environment, name)
        if "AllowedValues" in parameter:
            assert value in [str(v) for v in parameter["AllowedValues"]], (environment, name)
        if "MinValue" in parameter:
            assert parameter["MinValue"] <= int(value) <= parameter["MaxValue"], (environment, name)
    assert ("DomainName" in overrides) == ("CertificateArn" in overrides)
    assert "DataClassification" in deploy["tags"]


def test_dev_deploys_at_once_and_prod_by_canary_with_a_confirmed_changeset() -> None:
    def overrides(environment: str) -> dict[str, str]:
        return dict(o.split("=", 1) for o in SAMCONFIG[environment]["deploy"]["parameters"]["parameter_overrides"])

    assert overrides("dev")["DeploymentType"] == "AllAtOnce"
    assert overrides("prod")["DeploymentType"].startswith("Canary")
    assert SAMCONFIG["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    assert SAMCONFIG["default"]["deploy"]["parameters"]["stack_name"] == "weasis-link-dev"  # never prod by accident


def test_the_pipeline_deploys_staging_tests_it_then_production() -> None:
    jobs = PIPELINE["jobs"]

    def needs(job: str) -> set[str]:
        value = jobs[job].get("needs", [])
        return {value} if isinstance(value, str) else set(value)

    assert needs("build") == {"test"}
    assert needs("deploy-staging") == {"build"}
    assert needs("e2e-staging") == {"deploy-staging"}
    assert "e2e-staging" in needs("deploy-prod")
    assert jobs["deploy-prod"]["environment"] == "production"

    def runs(job: str) -> str:
        return "\n".join(step.get("run", "") for step in jobs[job]["steps"])

    assert "--config-env staging" in runs("deploy-staging")
    assert "--config-env prod" in runs("deploy-prod")
    assert "weasis_link_dev.smoke" in runs("e2e-staging")
    for job in ("deploy-staging", "deploy-prod"):
        assert jobs[job]["permissions"]["id-token"] == "write"  # OIDC, no stored AWS keys
        (credentials,) = [s for s in jobs[job]["steps"] if str(s.get("uses", "")).startswith("aws-actions/")]
        assert "role-to-assume" in credentials["with"]
        assert "aws-access-key-id" not in credentials["with"]
    assert PIPELINE["permissions"] == {"contents": "read"}
