"""template.yaml, read as data: the properties that matter for security, cost and the arm64 build.

Fast and offline: no SAM, cfn-lint or checkov here (tools/check-iac runs those); the YAML loader below turns
CloudFormation's short tags (!Ref, !Sub, !GetAtt, !If, ...) into their long JSON forms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from weasis_link.settings import ENVIRONMENT

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
PREFIX = "manifests/"
MANIFEST_OBJECTS = {"Fn::Sub": "${ManifestBucket.Arn}/manifests/*"}
FUNCTIONS = ("ApiFunction", "BuilderFunction", "CleanupFunction")
API_ENV = {
    "OAUTH_ISSUER",
    "OAUTH_AUDIENCES",
    "OAUTH_JWKS_URL",
    "OAUTH_REQUIRED_SCOPES",
    "OAUTH_ALGORITHMS",
    "OAUTH_LEEWAY_SECONDS",
    "ALLOW_ACCESS_TOKEN_QUERY",
    "MANIFEST_TTL_SECONDS",
    "PRESIGN_EXPIRES_SECONDS",
    "WEASIS_LINK_CONFIG",
    "BUILDER_FUNCTION_NAME",
    "SECRETS_MAX_AGE_SECONDS",
}
NAMESPACE = {"Fn::Sub": "WeasisLink/${AWS::StackName}"}
GLOBAL_ENV = {
    # Per stack: two stacks in one account never share a metric series.
    "POWERTOOLS_SERVICE_NAME": {"Ref": "AWS::StackName"},
    "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    "MANIFEST_BUCKET": {"Ref": "ManifestBucket"},
    "MANIFEST_PREFIX": PREFIX,
    # Cold start: no scan of every distribution's metadata for pydantic plugins (tests/unit/test_lazy_library_code.py).
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
}
ROUTES = {
    ("GET", "/manifests"),
    ("POST", "/manifests"),
    ("GET", "/manifests/{id}"),
    ("GET", "/weasis"),
    ("GET", "/IHEInvokeImageDisplay"),
}
# What the HTTP API access log may record. Nothing from the query string (it may carry ?access_token=), the
# headers, or the path (GET /manifests/{id} is a capability URL).
ACCESS_LOG_VARIABLES = {
    "$context.requestId",
    "$context.identity.sourceIp",
    "$context.requestTime",
    "$context.httpMethod",
    "$context.routeKey",
    "$context.protocol",
    "$context.status",
    "$context.responseLength",
    "$context.responseLatency",
    "$context.integrationLatency",
    "$context.integrationStatus",
    "$context.integrationErrorMessage",
    "$context.error.message",
}


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short-form tags into the long form (`!Ref X` -> {"Ref": "X"})."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    document = yaml.load(TEMPLATE_PATH.read_text(encoding="utf-8"), Loader=CloudFormationLoader)  # noqa: S506
    assert isinstance(document, dict)
    return document


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def function(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A function's effective properties: Globals.Function merged under its own (environment variables merged)."""
    globals_ = template["Globals"]["Function"]
    own = template["Resources"][name]["Properties"]
    merged = {**globals_, **own}
    merged["Environment"] = {
        "Variables": {
            **globals_.get("Environment", {}).get("Variables", {}),
            **own.get("Environment", {}).get("Variables", {}),
        }
    }
    return merged


def statements(template: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(role, policy name, statement) for every inline policy statement, either branch of an Fn::If included."""
    for role_name, role in resources(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            branches = policy["Fn::If"][1:] if "Fn::If" in policy else [policy]
            for branch in branches:
                if branch == {"Ref": "AWS::NoValue"}:
                    continue
                for statement in branch["PolicyDocument"]["Statement"]:
                    yield role_name, branch["PolicyName"], statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_of(template: dict[str, Any], function_name: str) -> str:
    role = template["Resources"][function_name]["Properties"]["Role"]
    assert role == {"Fn::GetAtt": [f"{function_name}Role", "Arn"]}
    return f"{function_name}Role"


# ------------------------------------------------------------------------------------------------ document


def test_template_has_no_yaml_aliases() -> None:
    # CloudFormation's own YAML parser rejects anchors and aliases, even though every local tool accepts them.
    events = yaml.parse(TEMPLATE_PATH.read_text(encoding="utf-8"), Loader=CloudFormationLoader)
    assert not [e for e in events if isinstance(e, yaml.AliasEvent)]


def test_is_a_sam_template(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert set(FUNCTIONS) == set(resources(template, "AWS::Serverless::Function"))


# ------------------------------------------------------------------------------------------------ runtime / arm64


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_are_python312_on_arm64_with_active_tracing(template: dict[str, Any], name: str) -> None:
    props = function(template, name)
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    # Lambda's own X-Ray tracing: no SDK in the bundle, no cold-start cost. The role may write traces.
    assert props["Tracing"] == "Active"
    assert [
        (s["Action"], s["Resource"])
        for r, n, s in statements(template)
        if r == role_of(template, name) and n == "tracing"
    ] == [(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*")]
    assert props["Layers"] == [{"Ref": "SharedLayer"}]
    assert isinstance(props["MemorySize"], int)
    assert isinstance(props["Timeout"], int)


def test_shared_layer_builds_arm64_wheels(template: dict[str, Any]) -> None:
    layer = template["Resources"]["SharedLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    # Without BuildArchitecture, `sam build` installs x86_64 wheels of cryptography / lxml / pydantic-core.
    assert layer["Metadata"] == {"BuildMethod": "python3.12", "BuildArchitecture": "arm64"}
    props = layer["Properties"]
    assert props["ContentUri"] == "layers/shared/"
    assert props["CompatibleRuntimes"] == ["python3.12"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert (TEMPLATE_PATH.parent / "layers/shared/requirements.txt").is_file()


@pytest.mark.parametrize(
    ("name", "code_uri", "handler"),
    [
        ("ApiFunction", "functions/api/", "app.lambda_handler"),
        ("BuilderFunction", "functions/builder/", "app.lambda_handler"),
        ("CleanupFunction", "functions/cleanup/", "app.lambda_handler"),
    ],
)
def test_code_and_handlers(template: dict[str, Any], name: str, code_uri: str, handler: str) -> None:
    props = function(template, name)
    assert (props["CodeUri"], props["Handler"]) == (code_uri, handler)
    assert (TEMPLATE_PATH.parent / code_uri).is_dir()


def test_the_builder_reads_the_api_functions_connector_configuration() -> None:
    # A link, so that the asynchronous build and GET /manifests query the same archives the same way.
    api, builder = (TEMPLATE_PATH.parent / f"functions/{name}/weasis-link.yaml" for name in ("api", "builder"))
    assert builder.is_symlink() and builder.read_bytes() == api.read_bytes()


def test_timeouts(template: dict[str, Any]) -> None:
    assert function(template, "ApiFunction")["Timeout"] <= 29  # API Gateway's integration limit is 30 s
    assert function(template, "BuilderFunction")["Timeout"] > function(template, "ApiFunction")["Timeout"]


def test_builder_is_never_retried(template: dict[str, Any]) -> None:
    config = function(template, "BuilderFunction")["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 0
    assert 60 <= config["MaximumEventAgeInSeconds"] <= 300


# ------------------------------------------------------------------------------------------------ environment


def test_global_environment(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert GLOBAL_ENV.items() <= variables.items()
    assert variables.get("POWERTOOLS_LOGGER_LOG_EVENT", "false") == "false"  # events carry bearer tokens


def test_the_local_stack_and_the_bench_run_with_the_templates_pydantic_switch(template: dict[str, Any]) -> None:
    from weasis_link_dev.local_stack import service_environment

    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert service_environment("jwks", "s3")["PYDANTIC_DISABLE_PLUGINS"] == variables["PYDANTIC_DISABLE_PLUGINS"]


def test_api_function_environment(template: dict[str, Any]) -> None:
    variables = function(template, "ApiFunction")["Environment"]["Variables"]
    assert variables.keys() >= API_ENV
    assert variables["WEASIS_LINK_CONFIG"] == {"Ref": "ConfigFile"}
    # The alias ARN: CodeDeploy decides which version builds, and IAM allows nothing else.
    assert variables["BUILDER_FUNCTION_NAME"] == {"Ref": "BuilderFunction.Alias"}
    assert variables["SECRETS_MAX_AGE_SECONDS"] == {"Ref": "SecretsMaxAgeSeconds"}
    assert variables["ALLOW_ACCESS_TOKEN_QUERY"] == {"Ref": "AllowAccessTokenInQuery"}


def test_builder_environment_is_the_api_environment_without_the_builder_name(template: dict[str, Any]) -> None:
    api = function(template, "ApiFunction")["Environment"]["Variables"]
    builder = function(template, "BuilderFunction")["Environment"]["Variables"]
    assert builder == {k: v for k, v in api.items() if k != "BUILDER_FUNCTION_NAME"}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_environment_names_are_known_to_the_settings(template: dict[str, Any], name: str) -> None:
    # weasis_link.settings.ENVIRONMENT is the one table of variables the code reads: a typo here would be ignored.
    variables = function(template, name)["Environment"]["Variables"]
    unknown = {v for v in variables if not v.startswith(("POWERTOOLS_", "PYDANTIC_"))} - ENVIRONMENT.keys()  # libraries
    assert not unknown


# ------------------------------------------------------------------------------------------------ HTTP API


def test_routes(template: dict[str, Any]) -> None:
    routes = set()
    for name in FUNCTIONS:
        for event in function(template, name).get("Events", {}).values():
            if event["Type"] == "HttpApi":
                assert name == "ApiFunction"
                assert event["Properties"]["ApiId"] == {"Ref": "HttpApi"}
                routes.add((event["Properties"]["Method"], event["Properties"]["Path"]))
    assert routes == ROUTES


def test_access_log_is_json_without_query_string_headers_or_path(template: dict[str, Any]) -> None:
    settings = template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]}
    log_format = settings["Format"]
    assert isinstance(log_format, str)
    record = json.loads(log_format)
    assert "\n" not in log_format  # one line per request
    used = set(re.findall(r"\$context\.[A-Za-z.]+", log_format))
    assert used == set(record.values())
    assert used <= ACCESS_LOG_VARIABLES, used - ACCESS_LOG_VARIABLES
    assert not re.search(r"(?i)query|header|authoriz|token|\$request|\$input|userAgent", log_format)
    assert {"$context.requestId", "$context.status", "$context.routeKey"} <= used
    assert "$context.path" not in used


def test_throttling_and_cors(template: dict[str, Any]) -> None:
    props = template["Resources"]["HttpApi"]["Properties"]
    assert props["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
    }
    cors = props["CorsConfiguration"]
    assert cors["AllowOrigins"] == {
        "Fn::If": ["HasCors", {"Fn::Split": [",", {"Ref": "CorsAllowedOrigins"}]}, {"Ref": "AWS::NoValue"}]
    }
    assert set(cors["AllowMethods"]) == {"GET", "POST"}
    assert "authorization" in {h.lower() for h in cors["AllowHeaders"]}


# ------------------------------------------------------------------------------------------------ bucket


def test_bucket_is_private_encrypted_unversioned(template: dict[str, Any]) -> None:
    props = template["Resources"]["ManifestBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    # Expiring minutes-old objects in a versioned bucket would only add delete markers and keep the data.
    assert "VersioningConfiguration" not in props
    assert "CorsConfiguration" not in props  # Weasis fetches the manifest with a plain GET


def test_bucket_lifecycle_backstops_the_cleaner(template: dict[str, Any]) -> None:
    rules = template["Resources"]["ManifestBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert all(rule["Status"] == "Enabled" for rule in rules)
    expiry = [r for r in rules if "ExpirationInDays" in r]
    assert [(r["Prefix"], r["ExpirationInDays"]) for r in expiry] == [(PREFIX, 1)]
    aborts = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert aborts
    assert all("Prefix" not in r for r in aborts)  # whole bucket


def test_bucket_policy_denies_plain_http(template: dict[str, Any]) -> None:
    (policy,) = resources(template, "AWS::S3::BucketPolicy").values()
    assert policy["Properties"]["Bucket"] == {"Ref": "ManifestBucket"}
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [{"Fn::GetAtt": ["ManifestBucket", "Arn"]}, {"Fn::Sub": "${ManifestBucket.Arn}/*"}]


# ------------------------------------------------------------------------------------------------ IAM


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_use_their_own_role(template: dict[str, Any], name: str) -> None:
    # An explicit role: SAM's generated one would add AWSLambdaBasicExecutionRole (any log group) and, with an
    # Fn::If VpcConfig, AWSLambdaVPCAccessExecutionRole even outside a VPC.
    role = role_of(template, name)
    assert "Policies" not in template["Resources"][name]["Properties"]
    trust = template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    managed = template["Resources"][role]["Properties"].get("ManagedPolicyArns")
    assert managed is None or managed["Fn::If"][0] == "InVpc"


# The only actions granted on "*": X-Ray offers no resource-level permission for them.
UNSCOPABLE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_no_wildcard_actions_or_resources(template: dict[str, Any]) -> None:
    for role, policy, statement in statements(template):
        assert statement["Effect"] == "Allow", (role, policy)
        for action in as_list(statement["Action"]):
            assert "*" not in action, (role, policy, action)
        if set(as_list(statement["Action"])) <= UNSCOPABLE_ACTIONS:
            assert statement["Resource"] == "*"
            continue
        for resource in as_list(statement["Resource"]):
            assert resource != "*", (role, policy)
            assert not (isinstance(resource, str) and resource.endswith(":*")), (role, policy)


def test_s3_access_is_scoped_to_the_manifest_prefix(template: dict[str, Any]) -> None:
    seen: dict[str, set[str]] = {}
    for role, _, statement in statements(template):
        actions = as_list(statement["Action"])
        s3 = {a for a in actions if a.startswith("s3:")}
        if not s3:
            continue
        assert s3 == set(actions), "S3 actions share no statement with other services"
        seen.setdefault(role, set()).update(s3)
        if s3 == {"s3:ListBucket"}:
            assert statement["Resource"] == {"Fn::GetAtt": ["ManifestBucket", "Arn"]}
            prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
            assert all(p.startswith(PREFIX) for p in prefixes)
        else:
            assert "s3:ListBucket" not in s3
            assert statement["Resource"] == MANIFEST_OBJECTS
    assert seen == {
        # ListBucket (on the prefix) makes a missing manifest a 404 rather than a 403.
        # DeleteObject: a manifest whose audit event the bus refused is removed (storage.put_while).
        "ApiFunctionRole": {"s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:DeleteObject"},
        "BuilderFunctionRole": {"s3:PutObject", "s3:GetObject", "s3:ListBucket"},
        "CleanupFunctionRole": {"s3:ListBucket", "s3:DeleteObject", "s3:GetObject"},
    }


def test_only_the_api_function_invokes_only_the_builder(template: dict[str, Any]) -> None:
    invokes = [(role, s["Resource"]) for role, _, s in statements(template) if "lambda:InvokeFunction" in s["Action"]]
    assert invokes == [("ApiFunctionRole", {"Ref": "BuilderFunction.Alias"})]  # the alias, not $LATEST


@pytest.mark.parametrize(
    ("condition", "action", "parameter"),
    [
        ("HasConfigSecrets", "secretsmanager:GetSecretValue", "ConfigSecretArns"),
        ("HasConfigParameters", "ssm:GetParameter", "ConfigParameterArns"),
        ("UseKms", "kms:Decrypt", "ManifestKmsKeyArn"),
        ("HasConfigKmsKeys", "kms:Decrypt", "ConfigKmsKeyArns"),
    ],
)
def test_optional_grants_exist_only_when_their_parameter_is_set(
    template: dict[str, Any], condition: str, action: str, parameter: str
) -> None:
    granted_to = set()
    for role_name in ("ApiFunctionRole", "BuilderFunctionRole", "CleanupFunctionRole"):
        for policy in template["Resources"][role_name]["Properties"]["Policies"]:
            if "Fn::If" not in policy:
                for statement in policy["PolicyDocument"]["Statement"]:
                    assert action not in as_list(statement["Action"])
                continue
            name, when_true, when_false = policy["Fn::If"]
            assert when_false == {"Ref": "AWS::NoValue"}
            (statement,) = when_true["PolicyDocument"]["Statement"]
            if action in as_list(statement["Action"]) and parameter in json.dumps(statement["Resource"]):
                assert name == condition
                granted_to.add(role_name)
    assert granted_to == {"ApiFunctionRole", "BuilderFunctionRole"}
    assert template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}


def test_vpc_only_when_subnets_and_security_groups_are_given(template: dict[str, Any]) -> None:
    for name in ("ApiFunction", "BuilderFunction"):
        vpc = function(template, name)["VpcConfig"]
        assert vpc["Fn::If"][0] == "InVpc"
        assert vpc["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert "VpcConfig" not in function(template, "CleanupFunction")
    assert "SubnetIds" in json.dumps(template["Conditions"]["InVpc"])
    assert "SecurityGroupIds" in json.dumps(template["Conditions"]["InVpc"])


# ------------------------------------------------------------------------------------------------ logs


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_logs_to_its_own_group_with_retention(template: dict[str, Any], name: str) -> None:
    props = function(template, name)
    logging_config = props["LoggingConfig"]
    # JSON: the platform and the standard-library logging of the cleaner emit JSON too (Powertools always does).
    assert logging_config["LogFormat"] == "JSON"
    assert logging_config["ApplicationLogLevel"] == {"Ref": "LogLevel"}
    group_name = logging_config["LogGroup"]["Ref"]
    group = template["Resources"][group_name]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + props["FunctionName"]["Fn::Sub"]}
    # The role may write to that group only.
    log_statements = [
        s
        for role, _, s in statements(template)
        if role == role_of(template, name) and any(a.startswith("logs:") for a in as_list(s["Action"]))
    ]
    assert log_statements == [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {"Fn::GetAtt": [group_name, "Arn"]},
        }
    ]


def test_every_log_group_has_retention(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")
    audit = groups.pop("AuditLogGroup")  # the audit trail's copy is kept as long as its archive
    assert audit["Properties"]["RetentionInDays"] == {"Ref": "AuditRetentionDays"}
    assert len(groups) == len(FUNCTIONS) + 1  # + the HTTP API access log
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())


# ------------------------------------------------------------------------------------------------ audit trail


def test_the_audit_bus_has_a_rule_and_an_archive_kept_six_years(template: dict[str, Any]) -> None:
    (bus,) = resources(template, "AWS::Events::EventBus")
    (archive,) = resources(template, "AWS::Events::Archive").values()
    assert archive["Properties"]["SourceArn"] == {"Fn::GetAtt": [bus, "Arn"]}
    assert archive["Properties"]["RetentionDays"] == {"Ref": "AuditRetentionDays"}
    retention = template["Parameters"]["AuditRetentionDays"]
    assert retention["Default"] >= 2190 and min(retention["AllowedValues"]) >= 2190  # six years at least
    rules = [r for r in resources(template, "AWS::Events::Rule").values() if r["Properties"].get("EventBusName")]
    assert [r["Properties"]["EventBusName"] for r in rules] == [{"Ref": bus}]


@pytest.mark.parametrize("role", ["ApiFunctionRole", "BuilderFunctionRole"])
def test_functions_may_only_put_audit_events(template: dict[str, Any], role: str) -> None:
    statements = [
        st
        for policy in template["Resources"][role]["Properties"]["Policies"]
        if isinstance(policy, dict) and "PolicyDocument" in policy
        for st in policy["PolicyDocument"]["Statement"]
    ]
    events = [st for st in statements if any(str(a).startswith("events:") for a in _actions(st))]
    assert [(_actions(st), st["Resource"]) for st in events] == [
        (["events:PutEvents"], {"Fn::GetAtt": ["AuditEventBus", "Arn"]})
    ]


@pytest.mark.parametrize("function_name", ["ApiFunction", "BuilderFunction"])
def test_functions_write_to_the_audit_bus_and_fail_closed_by_default(
    template: dict[str, Any], function_name: str
) -> None:
    variables = function(template, function_name)["Environment"]["Variables"]
    assert variables["AUDIT_EVENT_BUS"] == {"Ref": "AuditEventBus"}
    assert variables["AUDIT_FAIL_OPEN"] == {"Ref": "AuditFailOpen"}
    assert template["Parameters"]["AuditFailOpen"]["Default"] == "false"


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_cleanup_runs_on_the_schedule_parameter(template: dict[str, Any]) -> None:
    (event,) = function(template, "CleanupFunction")["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "CleanupSchedule"}


# ------------------------------------------------------------------------------------------------ parameters


PARAMETER_DEFAULTS = {
    "OAuthIssuer": None,
    "OAuthAudiences": None,
    "OAuthJwksUrl": None,
    "OAuthRequiredScopes": "",
    "OAuthAlgorithms": "RS256",
    "OAuthLeewaySeconds": 30,
    "AllowAccessTokenInQuery": "true",
    "ManifestTtlSeconds": 300,
    "PresignExpiresSeconds": 300,
    "ConfigFile": "weasis-link.yaml",
    "ConfigSecretArns": "",
    "ConfigParameterArns": "",
    "CorsAllowedOrigins": "",
    "ThrottlingBurstLimit": None,
    "ThrottlingRateLimit": None,
    "LogRetentionDays": 30,
    "CleanupSchedule": "rate(5 minutes)",
    "SubnetIds": "",
    "SecurityGroupIds": "",
    "LogLevel": None,
    # Every option below is off by default (tools/template-variants.json turns them on).
    "DomainName": "",
    "CertificateArn": "",
    "TruststoreUri": "",
    "TruststoreVersion": "",
    "AlarmTopicArn": "",
    "AlarmEmail": "",
    "DeploymentType": "Canary10Percent5Minutes",
    "PermissionsBoundaryArn": "",
    "DataClassification": None,
    "ConfigKmsKeyArns": "",
    "SecretsMaxAgeSeconds": 900,
    "ApiReservedConcurrency": "",
    "BuilderReservedConcurrency": "",
    "CleanupReservedConcurrency": "",
}


@pytest.mark.parametrize(("name", "default"), PARAMETER_DEFAULTS.items())
def test_parameters_have_description_and_a_valid_default(template: dict[str, Any], name: str, default: Any) -> None:
    parameter = template["Parameters"][name]
    assert parameter["Description"].strip()
    assert "Default" in parameter
    if default is not None:
        assert parameter["Default"] == default
    if "AllowedPattern" in parameter:
        assert re.fullmatch(parameter["AllowedPattern"], str(parameter["Default"]))
    if "AllowedValues" in parameter:
        assert parameter["Default"] in parameter["AllowedValues"]


def test_every_parameter_is_used(template: dict[str, Any]) -> None:
    body = json.dumps({k: v for k, v in template.items() if k not in ("Parameters", "Metadata")})
    unused = [p for p in template["Parameters"] if f'"Ref": "{p}"' not in body and "${" + p + "}" not in body]
    assert not unused


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("OAuthAlgorithms", "RS256,ES256", True),
        ("OAuthAlgorithms", "EdDSA", True),
        ("OAuthAlgorithms", "HS256", False),
        ("OAuthAlgorithms", "none", False),
        ("OAuthAudiences", "a,b", True),
        ("OAuthAudiences", "", False),
        ("OAuthRequiredScopes", "weasis:read openid", True),
        ("OAuthIssuer", "http://idp.example.org", False),
        ("OAuthIssuer", "", True),  # empty counts as unset: only the configuration file's auth.issuers
        ("OAuthJwksUrl", "", True),  # empty: OpenID discovery
        ("OAuthJwksUrl", "http://localhost.attacker.example/jwks", False),
        ("ConfigSecretArns", "arn:aws:secretsmanager:eu-central-1:123456789012:secret:pacs-??????", True),
        ("ConfigSecretArns", "*", False),
        ("ConfigParameterArns", "arn:aws:ssm:eu-central-1:123456789012:parameter/weasis/pacs-password", True),
        ("ConfigParameterArns", "arn:aws:ssm:eu-central-1:123456789012:parameter/*", False),
        ("CorsAllowedOrigins", "https://portal.example.org,http://localhost:3000", True),
        ("CorsAllowedOrigins", "*", False),
        ("SubnetIds", "subnet-0123abcd,subnet-4567ef01", True),
        ("ConfigFile", "/etc/passwd", False),
    ],
)
def test_parameter_patterns(template: dict[str, Any], name: str, value: str, accepted: bool) -> None:
    assert bool(re.fullmatch(template["Parameters"][name]["AllowedPattern"], value)) is accepted


# ------------------------------------------------------------------------------------------------ waivers / outputs


def test_every_checkov_waiver_has_a_reason(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), name
            assert len(skip["comment"]) > 40, (name, skip["id"])


def test_every_cfn_lint_waiver_has_a_reason() -> None:
    lines = TEMPLATE_PATH.read_text(encoding="utf-8").splitlines()
    waived = 0
    for i, line in enumerate(lines):
        if re.fullmatch(r"\s+- [EWI]S?\d{4}\b.*", line) and "ignore_checks:" in "\n".join(lines[max(0, i - 8) : i]):
            waived += 1
            # the reason is on the line, or in the comment lines right above it
            assert "#" in line or lines[i - 1].strip().startswith("#"), line
    assert waived


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {"Fn::GetAtt": ["HttpApi", "ApiEndpoint"]}
    assert outputs["ManifestBucketName"]["Value"] == {"Ref": "ManifestBucket"}
    for name in FUNCTIONS:
        assert outputs[f"{name}Name"]["Value"] == {"Ref": name}
        assert outputs[f"{name}Arn"]["Value"] == {"Fn::GetAtt": [name, "Arn"]}
        assert outputs[f"{name}AliasArn"]["Value"] == {"Ref": f"{name}.Alias"}
    assert outputs["CustomDomainTarget"]["Condition"] == "HasDomain"


# ------------------------------------------------------------------------------------------------ rendering
# The template with given parameter values, as CloudFormation would see it after deciding the conditions:
# resources whose Condition is false dropped, Fn::If replaced by its branch, AWS::NoValue removed.
VARIANTS: dict[str, dict[str, str]] = {
    k: v
    for k, v in json.loads((TEMPLATE_PATH.parent / "tools" / "template-variants.json").read_text()).items()
    if not k.startswith("//")
}
NO_VALUE = object()


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    values = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    assert overrides.keys() <= values.keys()
    return {**values, **overrides, "AWS::StackName": "weasis-prod", "AWS::Region": "eu-central-1"}


def condition(template: dict[str, Any], expression: Any, values: dict[str, str]) -> Any:
    if isinstance(expression, dict):
        ((key, arg),) = expression.items()
        match key:
            case "Ref":
                return values[arg]
            case "Condition":
                return condition(template, template["Conditions"][arg], values)
            case "Fn::Equals":
                return condition(template, arg[0], values) == condition(template, arg[1], values)
            case "Fn::Not":
                return not condition(template, arg[0], values)
            case "Fn::And":
                return all(condition(template, a, values) for a in arg)
            case "Fn::Or":
                return any(condition(template, a, values) for a in arg)
    return expression


def resolve(template: dict[str, Any], node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if set(node) == {"Fn::If"}:
            name, when_true, when_false = node["Fn::If"]
            chosen = when_true if condition(template, {"Condition": name}, values) else when_false
            return resolve(template, chosen, values)
        resolved = {k: resolve(template, v, values) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}
    if isinstance(node, list):
        return [v for v in (resolve(template, v, values) for v in node) if v is not NO_VALUE]
    return node


def render(template: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, Any]:
    values = parameter_values(template, overrides or {})
    rendered = dict(template)
    rendered["Resources"] = {
        name: resolve(template, r, values)
        for name, r in template["Resources"].items()
        if "Condition" not in r or condition(template, {"Condition": r["Condition"]}, values)
    }
    rendered["Globals"] = resolve(template, template["Globals"], values)
    rendered["Outputs"] = {
        name: o
        for name, o in template["Outputs"].items()
        if "Condition" not in o or condition(template, {"Condition": o["Condition"]}, values)
    }
    return rendered


def rule_holds(template: dict[str, Any], values: dict[str, str]) -> bool:
    full = parameter_values(template, values)
    return all(
        condition(template, assertion["Assert"], full)
        for rule in template["Rules"].values()
        for assertion in rule["Assertions"]
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_linted_variants_are_valid_parameter_values(template: dict[str, Any], variant: str) -> None:
    # tools/check-iac lints template.yaml with these values as defaults: they must be values CloudFormation accepts.
    for name, value in VARIANTS[variant].items():
        parameter = template["Parameters"][name]
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], value), name
        if "AllowedValues" in parameter:
            assert value in [str(v) for v in parameter["AllowedValues"]], name
    assert rule_holds(template, VARIANTS[variant])


def test_every_condition_is_true_in_some_variant_and_false_by_default(template: dict[str, Any]) -> None:
    # So that check-iac lints both branches of every Fn::If and every conditional resource with real values.
    defaults = parameter_values(template, {})
    variants = [parameter_values(template, v) for v in VARIANTS.values()]
    for name in template["Conditions"]:
        outcomes = {condition(template, {"Condition": name}, values) for values in [defaults, *variants]}
        assert outcomes == {True, False}, name
    assert not condition(template, {"Condition": "HasDomain"}, defaults)


@pytest.mark.parametrize(
    ("values", "holds"),
    [
        ({"DomainName": "viewer.hospital.example"}, False),  # a domain without its certificate
        ({"CertificateArn": VARIANTS["options-on"]["CertificateArn"]}, False),
        ({"TruststoreUri": "s3://truststore/ca.pem"}, False),  # mutual TLS needs the custom domain
        ({"SubnetIds": "subnet-0123abcd"}, False),
        ({}, True),
    ],
)
def test_rules_refuse_half_configured_options(template: dict[str, Any], values: dict[str, str], holds: bool) -> None:
    assert rule_holds(template, values) is holds


# ------------------------------------------------------------------------------------------------ alarms


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in resources(template, "AWS::CloudWatch::Alarm").items()}


def custom_metric_alarm(template: dict[str, Any], metric: str) -> dict[str, Any]:
    (alarm,) = [a for a in alarms(template).values() if a["MetricName"] == metric and a["Namespace"] == NAMESPACE]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]  # what metrics.py emits
    return alarm


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_each_function_has_errors_and_throttles_alarms(template: dict[str, Any], name: str, metric: str) -> None:
    matching = [
        a
        for a in alarms(template).values()
        if a["Namespace"] == "AWS/Lambda"
        and a["MetricName"] == metric
        and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": name}}]
    ]
    assert len(matching) == 1
    (alarm,) = matching
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_has_a_duration_alarm_near_its_timeout(template: dict[str, Any], name: str) -> None:
    (alarm,) = [
        a
        for a in alarms(template).values()
        if a["MetricName"] == "Duration" and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": name}}]
    ]
    assert alarm["ExtendedStatistic"] == "p99"
    timeout_ms = function(template, name)["Timeout"] * 1000
    assert 0.8 * timeout_ms <= alarm["Threshold"] < timeout_ms


def test_http_api_5xx_and_dropped_builds_alarm(template: dict[str, Any]) -> None:
    by_metric = {(json.dumps(a["Namespace"]), a["MetricName"]): a for a in alarms(template).values()}
    api = by_metric[('"AWS/ApiGateway"', "5xx")]
    assert api["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
    dropped = by_metric[('"AWS/Lambda"', "AsyncEventsDropped")]
    assert dropped["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "BuilderFunction"}}]
    assert dropped["Threshold"] == 1


@pytest.mark.parametrize("metric", ["ArchiveFailures", "ManifestLinksUnavailable", "ManifestDeletionsFailed"])
def test_custom_metric_alarms(template: dict[str, Any], metric: str) -> None:
    alarm = custom_metric_alarm(template, metric)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"  # nothing emitted: nothing failed


def test_an_alarm_fires_when_no_cleanup_run_completes_for_15_minutes(template: dict[str, Any]) -> None:
    alarm = custom_metric_alarm(template, "CleanupRunsCompleted")
    assert (alarm["Period"] * alarm["EvaluationPeriods"], alarm["Statistic"]) == (900, "Sum")
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"  # silence is the failure


def test_alarm_metrics_are_the_ones_the_code_emits(template: dict[str, Any]) -> None:
    from weasis_link import metrics

    emitted = {getattr(metrics, n) for n in dir(metrics) if n.isupper() and isinstance(getattr(metrics, n), str)}
    emitted |= set(metrics.BUILD_OUTCOME_METRICS.values()) | {"ManifestLinksUnavailable"}  # the last: API
    custom = {a["MetricName"] for a in alarms(template).values() if a["Namespace"] == NAMESPACE}
    assert custom <= emitted
    source = (TEMPLATE_PATH.parent / "functions/api/app.py").read_text()
    assert '"ManifestLinksUnavailable"' in source


@pytest.mark.parametrize("overrides", [{}, VARIANTS["external-alarm-topic"]], ids=["own topic", "external topic"])
def test_every_alarm_notifies_the_topic(template: dict[str, Any], overrides: dict[str, str]) -> None:
    rendered = render(template, overrides)
    external = overrides.get("AlarmTopicArn")
    expected = [{"Ref": "AlarmTopicArn"}] if external else [{"Ref": "AlarmTopic"}]
    for name, alarm in alarms(rendered).items():
        assert alarm["AlarmActions"] == expected, name
        assert alarm["OKActions"] == expected, name
        assert alarm["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), name  # DeploymentRole's scope
    created = {"AlarmTopic", "AlarmTopicKey", "AlarmEmailSubscription"} & rendered["Resources"].keys()
    assert created == (set() if external else {"AlarmTopic", "AlarmTopicKey"})  # no e-mail by default


def test_the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(template: dict[str, Any]) -> None:
    topic = template["Resources"]["AlarmTopic"]
    assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    key = template["Resources"]["AlarmTopicKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    (cloudwatch,) = [
        s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    subscription = render(template, VARIANTS["options-on"])["Resources"]["AlarmEmailSubscription"]["Properties"]
    assert subscription == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}


# ------------------------------------------------------------------------------------------------ dashboard


def test_one_dashboard_shows_launches_builds_archives_errors_and_cold_starts(template: dict[str, Any]) -> None:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body_template = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    references = set(re.findall(r"\$\{([A-Za-z0-9:.]+)\}", body_template))
    known = set(template["Resources"]) | {"AWS::StackName", "AWS::Region"}
    assert {r.split(".")[0] for r in references} <= known
    # Alarm ARNs (${Name.Arn}) become the alarm's logical name, other substitutions a placeholder.
    body = json.loads(re.sub(r"\$\{[A-Za-z0-9:.]+\}", "x", re.sub(r"\$\{(\w+)\.Arn\}", r"\1", body_template)))
    text = json.dumps(body)
    titles = " | ".join(w["properties"]["title"] for w in body["widgets"])
    for word in ("Launches", "Build outcomes", "Build time", "per archive", "Errors", "Cold starts", "Cleanup"):
        assert word in titles
    for metric in ("LaunchesStarted", "BuildsSucceeded", "BuildsFailed", "BuildsTimedOut", "BuildTime", "ColdStart"):
        assert metric in text
    assert 'MetricName=\\"ArchiveQueryTime\\"' in text  # per archive, through SEARCH on the archive dimension
    assert ",archive,service}" in text
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    rollback_only = {n for n in alarms(template) if n.endswith("NewVersionErrorsAlarm")}
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(set(alarms(template)) - rollback_only)


# ------------------------------------------------------------------------------------------------ rollout


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_is_published_behind_an_alias_and_rolled_out_by_codedeploy(
    template: dict[str, Any], name: str
) -> None:
    props = function(template, name)
    assert props["AutoPublishAlias"] == "live"
    preference = props["DeploymentPreference"]
    assert preference["Type"] == {"Ref": "DeploymentType"}
    assert preference["Role"] == {"Fn::GetAtt": ["DeploymentRole", "Arn"]}
    triggers = {a["Ref"] for a in preference["Alarms"]}
    assert f"{name}NewVersionErrorsAlarm" in triggers
    # The rollback trigger watches the new version behind the alias only.
    dimensions = {d["Name"]: d["Value"] for d in alarms(template)[f"{name}NewVersionErrorsAlarm"]["Dimensions"]}
    assert dimensions == {
        "FunctionName": {"Ref": name},
        "Resource": {"Fn::Sub": f"${{{name}}}:live"},
        "ExecutedVersion": {"Fn::GetAtt": [name, "Version.Version"]},
    }


def test_the_deployment_type_is_a_canary_by_default(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["DeploymentType"]
    assert parameter["Default"].startswith("Canary")
    assert "AllAtOnce" in parameter["AllowedValues"]


def test_codedeploy_may_shift_only_this_stacks_aliases(template: dict[str, Any]) -> None:
    role = template["Resources"]["DeploymentRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "codedeploy.amazonaws.com"}
    assert "ManagedPolicyArns" not in role
    resources_ = [s["Resource"]["Fn::Sub"] for _, _, s in statements(template) if _ == "DeploymentRole"]
    assert all("${AWS::StackName}-*" in r for r in resources_)


# ------------------------------------------------------------------------------------------------ edge


def test_without_a_domain_the_api_keeps_its_execute_api_endpoint(template: dict[str, Any]) -> None:
    rendered = render(template)
    assert rendered["Resources"]["HttpApi"]["Properties"]["DisableExecuteApiEndpoint"] is False
    assert not resources(rendered, "AWS::ApiGatewayV2::DomainName")
    assert "CustomDomainTarget" not in rendered["Outputs"]


def test_a_custom_domain_with_mutual_tls_replaces_the_execute_api_endpoint(template: dict[str, Any]) -> None:
    options = VARIANTS["options-on"]
    rendered = render(template, options)
    assert rendered["Resources"]["HttpApi"]["Properties"]["DisableExecuteApiEndpoint"] is True
    domain = rendered["Resources"]["ApiDomainName"]["Properties"]
    assert domain["DomainName"] == {"Ref": "DomainName"}
    assert domain["DomainNameConfigurations"] == [
        {"CertificateArn": {"Ref": "CertificateArn"}, "EndpointType": "REGIONAL", "SecurityPolicy": "TLS_1_2"}
    ]
    assert domain["MutualTlsAuthentication"] == {
        "TruststoreUri": {"Ref": "TruststoreUri"},
        "TruststoreVersion": {"Ref": "TruststoreVersion"},
    }
    mapping = rendered["Resources"]["ApiDomainMapping"]["Properties"]
    assert mapping == {
        "DomainName": {"Ref": "ApiDomainName"},
        "ApiId": {"Ref": "HttpApi"},
        "Stage": {"Ref": "HttpApiApiGatewayDefaultStage"},
    }
    assert "CustomDomainTarget" in rendered["Outputs"]
    without_mtls = render(template, {**options, "TruststoreUri": ""})["Resources"]["ApiDomainName"]["Properties"]
    assert "MutualTlsAuthentication" not in without_mtls


def test_short_links_use_the_custom_domain_unless_a_base_url_is_given(template: dict[str, Any]) -> None:
    domain_only = {k: VARIANTS["options-on"][k] for k in ("DomainName", "CertificateArn")}
    for overrides, expected in [
        ({}, ""),
        (domain_only, {"Fn::Sub": "https://${DomainName}"}),
        ({**domain_only, "PublicBaseUrl": "https://x.example/viewer"}, {"Ref": "PublicBaseUrl"}),
    ]:
        rendered = render(template, overrides)
        for name in ("ApiFunction", "BuilderFunction"):
            assert function(rendered, name)["Environment"]["Variables"]["PUBLIC_BASE_URL"] == expected


# ------------------------------------------------------------------------------------------------ controls


def test_tags_classify_the_data(template: dict[str, Any]) -> None:
    tags = template["Globals"]["Function"]["Tags"]
    assert tags == {"Application": "weasis-link", "DataClassification": {"Ref": "DataClassification"}}
    classification = {"Key": "DataClassification", "Value": {"Ref": "DataClassification"}}
    assert classification in template["Resources"]["ManifestBucket"]["Properties"]["Tags"]
    assert template["Resources"]["HttpApi"]["Properties"]["Tags"]["DataClassification"] == {"Ref": "DataClassification"}
    for name, group in resources(template, "AWS::Logs::LogGroup").items():
        assert classification in group["Properties"]["Tags"], name


@pytest.mark.parametrize("overrides", [{}, VARIANTS["options-on"]], ids=["off", "on"])
def test_every_role_carries_the_permissions_boundary_when_one_is_given(
    template: dict[str, Any], overrides: dict[str, str]
) -> None:
    rendered = render(template, overrides)
    roles = resources(rendered, "AWS::IAM::Role")
    assert set(roles) == {f"{f}Role" for f in FUNCTIONS} | {"DeploymentRole"}
    expected = {"Ref": "PermissionsBoundaryArn"} if overrides else None
    for name, role in roles.items():
        assert role["Properties"].get("PermissionsBoundary") == expected, name
    assert rendered["Globals"]["Function"].get("PermissionsBoundary") == expected  # roles SAM would generate


@pytest.mark.parametrize("overrides", [{}, VARIANTS["options-on"]], ids=["unset", "set"])
def test_reserved_concurrency_is_a_parameter_per_function(template: dict[str, Any], overrides: dict[str, str]) -> None:
    rendered = render(template, overrides)
    for name in FUNCTIONS:
        parameter = name.removesuffix("Function") + "ReservedConcurrency"
        reserved = rendered["Resources"][name]["Properties"].get("ReservedConcurrentExecutions")
        assert reserved == ({"Ref": parameter} if overrides else None)


def test_customer_keys_of_secrets_are_usable_through_secrets_manager_and_ssm_only(template: dict[str, Any]) -> None:
    rendered = render(template, VARIANTS["options-on"])
    for role in ("ApiFunctionRole", "BuilderFunctionRole"):
        (policy,) = [
            p for p in rendered["Resources"][role]["Properties"]["Policies"] if p["PolicyName"] == "config-kms"
        ]
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert statement["Action"] == "kms:Decrypt"
        assert statement["Resource"] == {"Fn::Split": [",", {"Ref": "ConfigKmsKeyArns"}]}
        assert statement["Condition"]["StringEquals"]["kms:ViaService"] == [
            {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"},
            {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"},
        ]
    policies = [p["PolicyName"] for p in render(template)["Resources"]["ApiFunctionRole"]["Properties"]["Policies"]]
    assert "config-kms" not in policies


def test_the_access_log_outlives_the_stack(template: dict[str, Any]) -> None:
    group = template["Resources"]["HttpApiAccessLogGroup"]
    assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_secrets_max_age_reaches_the_functions_that_resolve_secrets(template: dict[str, Any]) -> None:
    for name in ("ApiFunction", "BuilderFunction"):
        variables = function(template, name)["Environment"]["Variables"]
        assert variables["SECRETS_MAX_AGE_SECONDS"] == {"Ref": "SecretsMaxAgeSeconds"}


def test_snapstart_is_an_option_off_by_default(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["SnapStart"]
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == ("false", ["false", "true"])
    assert template["Conditions"]["UseSnapStart"] == {"Fn::Equals": [{"Ref": "SnapStart"}, "true"]}
    # SnapStart applies to published versions: the HTTP API must invoke one (the alias), not $LATEST.
    assert template["Globals"]["Function"]["AutoPublishAlias"]
    assert function(template, "ApiFunction")["SnapStart"] == {
        "Fn::If": ["UseSnapStart", {"ApplyOn": "PublishedVersions"}, {"Ref": "AWS::NoValue"}]
    }


@pytest.mark.parametrize("name", ["AuditArchive", "AuditLogGroup"])
def test_the_audit_trail_outlives_the_stack(template: dict[str, Any], name: str) -> None:
    resource = template["Resources"][name]
    assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")
