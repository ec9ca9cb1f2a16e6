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
}
GLOBAL_ENV = {
    "POWERTOOLS_SERVICE_NAME": "weasis-link",
    "POWERTOOLS_METRICS_NAMESPACE": "WeasisLink",
    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    "MANIFEST_BUCKET": {"Ref": "ManifestBucket"},
    "MANIFEST_PREFIX": PREFIX,
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
def test_functions_are_python312_on_arm64_without_xray(template: dict[str, Any], name: str) -> None:
    props = function(template, name)
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["Tracing"] == "Disabled"
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


def test_api_function_environment(template: dict[str, Any]) -> None:
    variables = function(template, "ApiFunction")["Environment"]["Variables"]
    assert variables.keys() >= API_ENV
    assert variables["WEASIS_LINK_CONFIG"] == {"Ref": "ConfigFile"}
    assert variables["BUILDER_FUNCTION_NAME"] == {"Ref": "BuilderFunction"}
    assert variables["ALLOW_ACCESS_TOKEN_QUERY"] == {"Ref": "AllowAccessTokenInQuery"}


def test_builder_environment_is_the_api_environment_without_the_builder_name(template: dict[str, Any]) -> None:
    api = function(template, "ApiFunction")["Environment"]["Variables"]
    builder = function(template, "BuilderFunction")["Environment"]["Variables"]
    assert builder == {k: v for k, v in api.items() if k != "BUILDER_FUNCTION_NAME"}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_environment_names_are_known_to_the_settings(template: dict[str, Any], name: str) -> None:
    # weasis_link.settings.ENVIRONMENT is the one table of variables the code reads: a typo here would be ignored.
    variables = function(template, name)["Environment"]["Variables"]
    unknown = {v for v in variables if not v.startswith("POWERTOOLS_")} - ENVIRONMENT.keys()
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


def test_no_wildcard_actions_or_resources(template: dict[str, Any]) -> None:
    for role, policy, statement in statements(template):
        assert statement["Effect"] == "Allow", (role, policy)
        for action in as_list(statement["Action"]):
            assert "*" not in action, (role, policy, action)
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
        "ApiFunctionRole": {"s3:PutObject", "s3:GetObject", "s3:ListBucket"},
        "BuilderFunctionRole": {"s3:PutObject", "s3:GetObject", "s3:ListBucket"},
        "CleanupFunctionRole": {"s3:ListBucket", "s3:DeleteObject", "s3:GetObject"},
    }


def test_only_the_api_function_invokes_only_the_builder(template: dict[str, Any]) -> None:
    invokes = [(role, s["Resource"]) for role, _, s in statements(template) if "lambda:InvokeFunction" in s["Action"]]
    assert invokes == [("ApiFunctionRole", {"Fn::GetAtt": ["BuilderFunction", "Arn"]})]


@pytest.mark.parametrize(
    ("condition", "action", "parameter"),
    [
        ("HasConfigSecrets", "secretsmanager:GetSecretValue", "ConfigSecretArns"),
        ("HasConfigParameters", "ssm:GetParameter", "ConfigParameterArns"),
        ("UseKms", "kms:Decrypt", "ManifestKmsKeyArn"),
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
            if action in as_list(statement["Action"]):
                assert name == condition
                assert parameter in json.dumps(statement["Resource"])
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
    assert len(groups) == len(FUNCTIONS) + 1  # + the HTTP API access log
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())


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
