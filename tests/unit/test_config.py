"""Connector configuration: the seed's model, validated at cold start, errors naming file and key."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from weasis_link.config import AppConfig, load_config
from weasis_link.criteria import SearchKey
from weasis_link.errors import ConfigurationError

BUNDLED = Path(__file__).resolve().parents[2] / "functions" / "api" / "weasis-link.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "weasis-link.yaml"
    path.write_text(text)
    return path


def no_secrets(ref: str) -> str:
    raise AssertionError(f"unexpected secret reference {ref}")


def test_bundled_default_is_the_embedded_sample_archive() -> None:
    config = load_config(BUNDLED, environ={}, resolve_secret=no_secrets)
    [(cid, connector)] = config.connector.config.items()
    assert (cid, connector.type) == ("sample", "DB")
    assert connector.db_connector is not None and connector.db_connector.init_script is not None
    assert Path(connector.db_connector.init_script).is_file()
    assert config.wado is not None and config.wado.authentication is not None
    assert config.wado.authentication.oauth2 is not None
    assert config.wado.authentication.oauth2.url == "http://127.0.0.1:3003/wado"


DICOMWEB = """
wado:
  authentication:
    oauth2: {url: "https://pacs.example/wado"}
connector:
  default: "b, nope"
  config:
    a:
      type: DICOM
      search-criteria: {deactivated: "PATIENT_ID, SOP_INSTANCE_UID"}
      dicom-connector: {calling-aet: WEASIS, aet: DCM4CHEE, host: pacs.example, port: 11112}
    b:
      type: DICOM_WEB
      wado:
        url: "https://cloud.example/wado"
      manifest: {mode: WADO_RS, transfer-syntax-uid: "*", override-dicom-tags: "0x00100010, 0x00100020"}
      dicom-web-connector:
        url: "https://cloud.example/dicomweb"
        authentication: {type: BASIC, login: u, password: "env:PACS_PASSWORD"}
"""


def test_seed_model_with_defaults_deactivation_and_per_connector_wado() -> None:
    config = load_config(
        _tmp(DICOMWEB), environ={}, resolve_secret=lambda ref: "s3cret" if ref == "env:PACS_PASSWORD" else ""
    )
    assert config.default_connector_ids == ["b"]  # the unknown id is dropped
    assert config.unknown_default_ids == ["nope"]
    assert config.connector.config["a"].search_criteria.deactivated == [
        SearchKey.PATIENT_ID,
        SearchKey.SOP_INSTANCE_UID,
    ]
    assert config.wado_for("a") is config.wado
    b_wado = config.wado_for("b")
    assert b_wado is not None and b_wado.url == "https://cloud.example/wado" and b_wado.authentication is None
    web = config.connector.config["b"].dicom_web_connector
    assert web is not None and web.authentication.password is not None
    assert web.authentication.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)
    assert config.connector.config["b"].manifest.override_dicom_tags == ["0x00100010", "0x00100020"]


def test_unknown_default_ids_only_fall_back_to_all() -> None:
    config = load_config(_tmp(DICOMWEB.replace('"b, nope"', "[nope]")), environ={}, resolve_secret=lambda r: "x")
    assert config.default_connector_ids == ["a", "b"]


def _tmp(text: str) -> Path:
    import tempfile

    d = Path(tempfile.mkdtemp())
    return write(d, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("connector: {config: {}}", "connector.config: Dictionary should have at least 1 item"),
        ("connector: {config: {a: {type: DB}}}", "connector.config.a: Value error, type DB needs a db-connector block"),
        ("connector: {config: {a: {type: FTP}}}", "connector.config.a.type"),
        (
            "connector: {config: {'bad id!': {type: DICOM, dicom-connector: {calling-aet: A, aet: B, host: h, port: 1}}}}",
            "connector.config.bad id!",
        ),
        (
            "wado: {url: 'https://w'}\nconnector: {config: {a: {type: DICOM, dicom-connector: {calling-aet: A, aet: B, host: h, port: 70000}}}}",
            "connector.config.a.dicom-connector.port",
        ),
        (
            "connector: {config: {a: {type: DICOM, dicom-connector: {calling-aet: A, aet: B, host: h, port: 1}}}}",
            "connector 'a' has no WADO URL",
        ),
        ("wado: {authentication: {force-basic: true}}\nconnector: {config: {}}", "wado.authentication"),
        ("connector: [1, 2]", "connector"),
        ("connector: {config: {a: {type: DICOM, unknown-key: 1}}}", "connector.config.a.unknown-key"),
        ("- not a mapping", "must be a mapping"),
        ("connector: {config: {a: [unclosed", "is not valid YAML"),
    ],
)
def test_errors_name_the_file_and_the_key(text: str, message: str) -> None:
    path = _tmp(text)
    with pytest.raises(ConfigurationError) as err:
        load_config(path, environ={}, resolve_secret=no_secrets)
    assert str(path) in err.value.detail
    assert message in err.value.detail, err.value.detail


def test_environment_interpolation() -> None:
    text = "wado: {url: '${WADO:-https://default/wado}'}\nconnector: {config: {a: {type: DICOM, dicom-connector: {calling-aet: A, aet: B, host: '${PACS_HOST}', port: 104}}}}"
    config = load_config(_tmp(text), environ={"PACS_HOST": "pacs.internal"}, resolve_secret=no_secrets)
    assert config.wado is not None and config.wado.url == "https://default/wado"
    dicom = config.connector.config["a"].dicom_connector
    assert dicom is not None and dicom.host == "pacs.internal"
    with pytest.raises(ConfigurationError, match="environment variable PACS_HOST is not set"):
        load_config(_tmp(text), environ={}, resolve_secret=no_secrets)


def test_sql_select_must_be_one_statement() -> None:
    text = "wado: {url: 'https://w'}\nconnector: {config: {a: {type: DB, db-connector: {uri: 'sqlite://', query: {select: 'SELECT 1; DROP TABLE x'}}}}}"
    with pytest.raises(ConfigurationError, match="single SELECT"):
        load_config(_tmp(text), environ={}, resolve_secret=no_secrets)


@mock_aws
def test_secret_references_resolve_from_ssm_and_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    boto3.client("ssm").put_parameter(Name="/weasis/db", Value="db-pass", Type="SecureString")
    boto3.client("secretsmanager").create_secret(Name="weasis/pacs", SecretString=json.dumps({"password": "pacs-pass"}))
    text = """
wado:
  authentication:
    basic: {url: "https://pacs/wado", login: viewer, password: "secretsmanager:weasis/pacs#password"}
connector:
  config:
    db:
      type: DB
      db-connector: {uri: "postgresql://pacs/db", user: u, password: "ssm:/weasis/db", query: {select: "SELECT 1 AS x"}}
"""
    config = load_config(_tmp(text), environ={})
    basic = config.wado.authentication.basic if config.wado and config.wado.authentication else None
    assert basic is not None and basic.password is not None and basic.password.get_secret_value() == "pacs-pass"
    db = config.connector.config["db"].db_connector
    assert db is not None and db.password is not None and db.password.get_secret_value() == "db-pass"
    with pytest.raises(ConfigurationError, match="cannot resolve ssm reference /weasis/missing"):
        load_config(_tmp(text.replace("/weasis/db", "/weasis/missing")), environ={})


def test_app_config_model_is_frozen() -> None:
    config = load_config(BUNDLED, environ={}, resolve_secret=no_secrets)
    assert isinstance(config, AppConfig)
    with pytest.raises(Exception, match="frozen"):
        config.wado = None  # type: ignore[misc]


def test_files_the_connectors_read_must_exist_at_cold_start(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----")
    text = (
        "wado: {url: 'https://w'}\nconnector: {config: {a: {type: DICOM, dicom-connector: {calling-aet: A, aet: B, "
        "host: h, port: 104, tls: {ca-file: ca.pem}}}}}"
    )
    config = load_config(write(tmp_path, text), environ={}, resolve_secret=no_secrets)
    tls = config.connector.config["a"].dicom_connector.tls  # type: ignore[union-attr]
    assert tls is not None and tls.ca_file == str(tmp_path / "ca.pem")  # resolved next to the configuration
    missing = text.replace("tls: {ca-file: ca.pem}", "tls: {cert-file: c.pem, key-file: k.pem}")
    with pytest.raises(
        ConfigurationError, match=r"connector\.config\.a\.dicom-connector\.tls\.cert-file: file not found"
    ):
        load_config(write(tmp_path, missing), environ={}, resolve_secret=no_secrets)


# A configuration that is a JSON document is read with json (PyYAML not imported): each document must read exactly
# as PyYAML reads it (repr tells 1 from 1.0 from True), JSON that YAML 1.1 reads otherwise included.
JSON_AS_YAML = [
    '{"connector": {"config": {"a": {"type": "DICOM_WEB", "port": 104, "ratio": 1.5, "on": true, "off": null}}}}',
    '  \n{"a": [1, -0, 2.50, -0.0, "x\\/y", "\\u00e9\\n\\"q\\"", "\u00e9\u2028", "<<", "yes"], "a": 2}\n',
    '{"exponent": 1e3}',  # YAML 1.1: the string '1e3'
    '{"exponent": 1.5E+3}',
    '{"constant": NaN}',  # not JSON; a string to YAML
    '{"pair": "\\ud83d\\ude00"}',  # JSON: one character; YAML: two surrogates
    '{"nel": "x\x85y"}',  # YAML folds NEL, a line break to YAML 1.1
    '{"tab":\t1}',  # YAML refuses a tab here
    '{"del": "\x7f"}',  # YAML's reader refuses it
    "{a: 1, 'b': [x, y]}  # flow-style YAML, not JSON",
    '{"a": 1}\n---\n{"b": 2}',  # two YAML documents
]


@pytest.mark.parametrize("text", JSON_AS_YAML)
def test_a_json_configuration_reads_as_yaml_reads_it(text: str) -> None:
    import yaml

    from weasis_link.config import _parse_document

    try:
        expected = repr(yaml.safe_load(text))
    except yaml.YAMLError:
        with pytest.raises(ConfigurationError, match="is not valid YAML"):
            _parse_document(text, Path("c.yaml"))
        return
    assert repr(_parse_document(text, Path("c.yaml"))) == expected


def test_a_json_configuration_is_validated_like_its_yaml(tmp_path: Path) -> None:
    import yaml

    as_yaml = load_config(write(tmp_path, DICOMWEB), environ={}, resolve_secret=lambda ref: "s3cret")
    as_json = json.dumps(yaml.safe_load(DICOMWEB), indent=2)
    assert load_config(write(tmp_path, as_json), environ={}, resolve_secret=lambda ref: "s3cret") == as_yaml
