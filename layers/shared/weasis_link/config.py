"""Connector configuration: a YAML file following the connector model of ViewerHub's docs (seed 002).

```yaml
wado:                      # global; a connector's own `wado` block replaces it
  authentication:
    force-basic: false
    oauth2: {url: https://pacs.example/wado}
    basic: {url: https://pacs.example/wado, login: viewer, password: "ssm:/weasis/pacs-password"}
connector:
  default: [pacs]          # absent or unknown ids -> every configured connector
  config:
    pacs:
      type: DICOM_WEB      # DB | DICOM | DICOM_WEB
      search-criteria: {deactivated: [PATIENT_ID]}
      dicom-web-connector: {url: https://pacs.example/dicom-web}
```

Validated by pydantic at cold start: an error names the file and the key. Strings may use `${VAR}` or
`${VAR:-default}` (environment); secrets (`password`, `client-secret`, `login`) may be references
`secretsmanager:<id>[#json-key]`, `ssm:<parameter-name>` or `env:<VAR>`, resolved once at cold start
(docs/configuration.md has every key).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from weasis_link.claims_access import AccessConfig
from weasis_link.criteria import CONNECTOR_ID, SearchKey
from weasis_link.errors import ConfigurationError
from weasis_link.identity import AuthConfig
from weasis_link.launch_options import LaunchOptionsConfig

WildcardKey = Literal["PATIENT_ID", "STUDY_ACCESSION_NUMBER"]

CONNECTOR_ID_PATTERN: Final = f"^{CONNECTOR_ID}$"
HTTP_URL_PATTERN: Final = r"^https?://[^\s\"$<>]+$"
SECRET_KEYS: Final = frozenset({"password", "client-secret", "login"})
_ENV_REF: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# A column of the configured select: its output name, or `table.column` as weasis-pacs-connector configurations say.
_SQL_COLUMN: Final = r"^(?:[A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$"
_DICOM_TAG: Final = re.compile(r"0x[0-9A-F]{8}")

HttpUrl = Annotated[str, Field(pattern=HTTP_URL_PATTERN, max_length=2048)]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _comma_list(value: object) -> object:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class _Model(BaseModel):
    # defer_build: a model's validator is built when first used, not when its class is created; AppConfig's
    # validation builds the nested ones it needs once, as part of its own (cold start: about 10 ms less).
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_kebab, populate_by_name=True, defer_build=True
    )


# --- WADO: how Weasis fetches the images (what goes into the manifest's arcQuery) ----------------------------


class ServiceTokenConfig(_Model):
    """Inject the service's own token (client credentials) into the manifest instead of the caller's: Weasis
    downloads with the injected token for minutes, and callers' tokens may expire before it is done."""

    # when-caller-token-expires: only when the caller's token would expire before the manifest (plus the margin).
    use: Literal["always", "when-caller-token-expires"] = "when-caller-token-expires"
    client_credentials: ClientCredentialsConfig


class OAuth2WadoConfig(_Model):
    url: HttpUrl
    service_token: ServiceTokenConfig | None = None


class BasicWadoConfig(_Model):
    url: HttpUrl
    login: str | None = None
    password: SecretStr | None = None


class WadoAuthenticationConfig(_Model):
    force_basic: bool = False
    oauth2: OAuth2WadoConfig | None = None
    basic: BasicWadoConfig | None = None

    @model_validator(mode="after")
    def _force_basic_needs_basic(self) -> WadoAuthenticationConfig:
        if self.force_basic and self.basic is None:
            raise ValueError("force-basic is true but no basic block is configured")
        return self


class WadoConfig(_Model):
    url: HttpUrl | None = Field(default=None, description="WADO URL used when no authentication block applies")
    authentication: WadoAuthenticationConfig | None = None


class ManifestConfig(_Model):
    """Per-connector arcQuery options."""

    mode: Literal["WADO_URI", "WADO_RS"] = "WADO_URI"
    require_only_sop_instance_uid: bool = False
    # Emitted under the XSD's spelling `additionnalParameters`; Weasis >= 4.7.0 ignores it (docs/configuration.md).
    additionnal_parameters: str | None = Field(default=None, pattern=r"^&[^\s\"$]*$")
    # The portable way to ask for a transfer syntax (read by every Weasis version): Series@WadoTransferSyntaxUID.
    transfer_syntax_uid: str | None = Field(default=None, pattern=r"^(\*|[0-9]+(\.[0-9]+)*)$", max_length=64)
    compression_rate: int | None = Field(default=None, ge=1, le=100)
    override_dicom_tags: Annotated[list[str], BeforeValidator(_comma_list)] = Field(default_factory=list)
    http_tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("override_dicom_tags")
    @classmethod
    def _hex_tags(cls, tags: list[str]) -> list[str]:
        normalised = [t.upper().replace("0X", "0x") for t in tags]
        bad = [t for t in normalised if not _DICOM_TAG.fullmatch(t)]
        if bad:
            raise ValueError("tags must be written 0xGGGGEEEE (8 hex digits), e.g. 0x00100010")
        return normalised

    @field_validator("http_tags")
    @classmethod
    def _header_safe(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}", key) or re.search(r"[\r\n\x00]", value):
                raise ValueError("http-tags must be valid HTTP header names with values on one line")
            if key.lower() == "authorization":
                raise ValueError("Authorization is set by wado.authentication, not by http-tags")
        return tags


# --- connector types ------------------------------------------------------------------------------------------


class DbQueryConfig(_Model):
    """`select` returns one row per instance with the standard column names (docs/configuration.md); the key
    columns name what search criteria are matched against: an output column of the select (`patientId`) or the
    `table.column` it is selected from (`p.pat_id`, as weasis-pacs-connector configurations say)."""

    select: str = Field(min_length=10)
    patient_id_column: str = Field(default="patientId", pattern=_SQL_COLUMN)
    issuer_of_patient_id_column: str | None = Field(default="issuerOfPatientId", pattern=_SQL_COLUMN)
    study_instance_uid_column: str = Field(default="studyInstanceUid", pattern=_SQL_COLUMN)
    accession_number_column: str = Field(default="accessionNumber", pattern=_SQL_COLUMN)
    serie_instance_uid_column: str = Field(default="seriesInstanceUid", pattern=_SQL_COLUMN)
    sop_instance_uid_column: str = Field(default="sopInstanceUid", pattern=_SQL_COLUMN)

    @field_validator("select")
    @classmethod
    def _one_select(cls, sql: str) -> str:
        stripped = sql.strip().rstrip(";").strip()
        if not re.match(r"(?is)^(select|with)\s", stripped) or ";" in stripped:
            raise ValueError("must be a single SELECT statement (it is wrapped as a subquery)")
        return stripped


class DbConnectorConfig(_Model):
    user: str | None = None
    password: SecretStr | None = None
    uri: str = Field(min_length=3, description="SQLAlchemy URL or JDBC URL (jdbc:postgresql://host:5432/db)")
    driver: str | None = Field(default=None, description="SQLAlchemy dialect+driver or a JDBC driver class name")
    query: DbQueryConfig
    connect_timeout_seconds: float = Field(default=5, gt=0, le=20)
    query_timeout_seconds: float = Field(default=15, gt=0, le=25)
    init_script: str | None = Field(
        default=None, description="SQL script loaded into a fresh SQLite database (the embedded sample archive)"
    )

    @model_validator(mode="after")
    def _init_script_only_for_sqlite(self) -> DbConnectorConfig:
        if self.init_script and not self.uri.startswith(("sqlite:", "jdbc:sqlite:")):
            raise ValueError("init-script is only supported for SQLite")
        return self


class DicomTlsConfig(_Model):
    """DICOM TLS (PS3.15 Annex B): the PACS certificate is checked against `ca-file` (else the system CAs); a client
    certificate is presented when the PACS asks for one."""

    ca_file: str | None = Field(default=None, description="PEM bundle of the CAs that sign the PACS certificate")
    cert_file: str | None = Field(default=None, description="PEM client certificate (with key-file)")
    key_file: str | None = Field(default=None, description="PEM private key of cert-file (unencrypted)")
    verify_hostname: bool = True
    server_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="name the PACS certificate must carry, when it is not `host` (a PACS reached by IP address)",
    )

    @model_validator(mode="after")
    def _cert_and_key(self) -> DicomTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert-file and key-file go together")
        return self


# An AE title: 1-16 characters of the default repertoire, no backslash or control character (and not only spaces).
_AE_TITLE: Final = r"^[ -\[\]-~]{1,16}$"


class DicomConnectorConfig(_Model):
    calling_aet: str = Field(pattern=_AE_TITLE, description="our AE title")
    aet: str = Field(pattern=_AE_TITLE, description="the PACS's (called) AE title")
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    tls: DicomTlsConfig | None = None
    connect_timeout_seconds: float = Field(default=5, gt=0, le=20, description="TCP (and TLS) connection")
    acse_timeout_seconds: float = Field(default=10, gt=0, le=25, description="association negotiation")
    dimse_timeout_seconds: float = Field(default=15, gt=0, le=25, description="longest wait for one C-FIND answer")
    network_timeout_seconds: float = Field(
        default=20, gt=0, le=25, description="longest silence on an association (bounds the DIMSE timeout too)"
    )
    max_concurrency: int = Field(
        default=4, ge=1, le=16, description="associations open at once (the IMAGE-level queries of several studies)"
    )

    @field_validator("calling_aet", "aet")
    @classmethod
    def _not_blank(cls, title: str) -> str:
        if not title.strip():
            raise ValueError("an AE title cannot be only spaces")
        return title


class ClientCredentialsConfig(_Model):
    """An OAuth2 client-credentials grant (RFC 6749 §4.4): the service's own token, not the caller's."""

    token_url: HttpUrl = Field(description="the authorization server's token endpoint")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str | None = Field(default=None, pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$")
    # Auth0-style and some Keycloak setups name the API the token is for with an `audience` form parameter.
    audience: str | None = Field(default=None, min_length=1)
    # RFC 6749 §2.3.1: every server must accept HTTP Basic; some only accept the secret in the form body.
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    timeout_seconds: float = Field(default=5, gt=0, le=10)


class QidoAuthenticationConfig(_Model):
    """How we authenticate our QIDO requests (independent of what goes into the manifest)."""

    type: Literal["NONE", "BASIC", "BEARER_PASSTHROUGH", "CLIENT_CREDENTIALS"] = "NONE"
    login: str | None = None
    password: SecretStr | None = None
    client_credentials: ClientCredentialsConfig | None = None

    @model_validator(mode="after")
    def _complete(self) -> QidoAuthenticationConfig:
        if self.type == "BASIC" and (self.login is None or self.password is None):
            raise ValueError("type BASIC needs login and password")
        if self.type == "BASIC" and self.login is not None and ":" in self.login:
            raise ValueError("a BASIC login cannot contain ':' (RFC 7617)")
        if self.type == "CLIENT_CREDENTIALS" and self.client_credentials is None:
            raise ValueError("type CLIENT_CREDENTIALS needs a client-credentials block")
        return self


def _without_trailing_slash(url: str | None) -> str | None:
    # Paths are appended as "/studies/...": a root written with a trailing slash would give "//studies".
    return url.rstrip("/") if url else url


class DicomWebConnectorConfig(_Model):
    url: HttpUrl = Field(description="DICOMweb (QIDO-RS) root, e.g. https://pacs.example/dicom-web")
    wado_rs_url: HttpUrl | None = Field(default=None, description="WADO-RS root for WADO_RS manifests, if not url")
    authentication: QidoAuthenticationConfig = Field(default_factory=QidoAuthenticationConfig)
    connect_timeout_seconds: float = Field(default=3, gt=0, le=10)
    read_timeout_seconds: float = Field(default=15, gt=0, le=25)
    retries: int = Field(default=2, ge=0, le=5)
    max_concurrency: int = Field(default=4, ge=1, le=16)
    # One instance-level request per study is the goal: the default covers all but exceptional studies, and the
    # connector pages on (limit/offset) whenever a page comes back full or the PACS caps its answers.
    page_size: int = Field(default=10000, ge=10, le=100000)
    max_uids_per_request: int = Field(default=40, ge=1, le=200)
    ca_file: str | None = None

    @field_validator("url", "wado_rs_url")
    @classmethod
    def _strip_slash(cls, url: str | None) -> str | None:
        return _without_trailing_slash(url)


class SearchCriteriaConfig(_Model):
    deactivated: Annotated[list[SearchKey], BeforeValidator(_comma_list)] = Field(default_factory=list)
    # Wildcards are opt-in per key and bounded (weasis_link/archives/patient_identity.py, docs/security.md).
    wildcards: Annotated[list[WildcardKey], BeforeValidator(_comma_list)] = Field(default_factory=list)
    wildcard_max_patients: int = Field(default=1, ge=1, le=1000)


class ConnectorConfig(_Model):
    type: Literal["DB", "DICOM", "DICOM_WEB"]
    # The assigning authority applied to a bare patientID in this archive (weasis_link/archives/patient_identity.py).
    default_issuer: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[^\\\x00-\x1f*?^]+$")
    search_criteria: SearchCriteriaConfig = Field(default_factory=SearchCriteriaConfig)
    wado: WadoConfig | None = None
    manifest: ManifestConfig = Field(default_factory=ManifestConfig)
    db_connector: DbConnectorConfig | None = None
    dicom_connector: DicomConnectorConfig | None = None
    dicom_web_connector: DicomWebConnectorConfig | None = None
    # Who may use this archive (claims_access.py); absent: every authenticated caller.
    access: AccessConfig | None = None

    @model_validator(mode="after")
    def _block_for_type(self) -> ConnectorConfig:
        blocks = {"DB": "db_connector", "DICOM": "dicom_connector", "DICOM_WEB": "dicom_web_connector"}
        needed = blocks[self.type]
        if getattr(self, needed) is None:
            raise ValueError(f"type {self.type} needs a {_kebab(needed)} block")
        extra = [_kebab(b) for t, b in blocks.items() if t != self.type and getattr(self, b) is not None]
        if extra:
            raise ValueError(f"type {self.type} does not use {', '.join(extra)}")
        if self.manifest.mode == "WADO_RS" and self.type != "DICOM_WEB" and not self._has_wado_url():
            raise ValueError("manifest.mode WADO_RS needs a DICOM_WEB connector or a wado url")
        return self

    def _has_wado_url(self) -> bool:
        return self.wado is not None and _wado_has_url(self.wado)


class ConnectorsConfig(_Model):
    default: Annotated[list[str], BeforeValidator(_comma_list)] = Field(default_factory=list)
    # Deployment-wide: a bare patientID matching several patient identities is refused (409) or listed with a warning.
    ambiguous_patient: Literal["refuse", "warn"] = "refuse"
    config: dict[Annotated[str, Field(pattern=CONNECTOR_ID_PATTERN)], ConnectorConfig] = Field(min_length=1)


class AppConfig(_Model):
    connector: ConnectorsConfig
    wado: WadoConfig | None = None
    launch_options: LaunchOptionsConfig = Field(default_factory=LaunchOptionsConfig)
    auth: AuthConfig | None = None  # trusted identity providers (weasis_link.identity), besides OAUTH_*

    @model_validator(mode="after")
    def _every_connector_has_a_wado_url(self) -> AppConfig:
        for cid, c in self.connector.config.items():
            wado = self.wado_for(cid)
            if wado is not None and _wado_has_url(wado):
                continue
            if c.type == "DICOM_WEB" and c.manifest.mode == "WADO_RS":
                continue
            raise ValueError(f"connector '{cid}' has no WADO URL: set wado.url or wado.authentication urls")
        return self

    @property
    def default_connector_ids(self) -> list[str]:
        """`connector.default`, minus unknown ids; all connectors when absent or when no id is known."""
        known = [cid for cid in self.connector.default if cid in self.connector.config]
        return known or list(self.connector.config)

    @property
    def unknown_default_ids(self) -> list[str]:
        return [cid for cid in self.connector.default if cid not in self.connector.config]

    def wado_for(self, connector_id: str) -> WadoConfig | None:
        """The connector's own wado block replaces the global one (no field-by-field merge)."""
        own = self.connector.config[connector_id].wado
        return own if own is not None else self.wado


def _wado_has_url(w: WadoConfig) -> bool:
    auth = w.authentication
    return bool(w.url or (auth and (auth.oauth2 or auth.basic)))


# --- loading --------------------------------------------------------------------------------------------------

SecretResolver = Callable[[str], str]


def load_config(
    path: Path, *, environ: Mapping[str, str] | None = None, resolve_secret: SecretResolver | None = None
) -> AppConfig:
    """Read, interpolate, resolve secret references and validate; ConfigurationError names file and key."""
    env = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    raw = _parse_document(text, path)
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: the configuration must be a mapping with a 'connector' key")
    if resolve_secret is None:
        from weasis_link.secret_references import resolve_reference  # boto3 only when a reference is used

        resolve_secret = resolve_reference
    prepared = _prepare(raw, env, resolve_secret, path, ())
    try:
        config = AppConfig.model_validate(prepared)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigurationError(f"{path}: {problems}") from None
    return _resolve_files(config, path)


# What PyYAML (YAML 1.1) reads otherwise than JSON does in a JSON document: a tab, a character its reader refuses
# or reads as a line break (NEL: \x85), an escaped UTF-16 surrogate (JSON pairs them). Harmless when it matches more.
# Compiled at its first use (re's cache), by a JSON document only.
_NOT_AS_IN_YAML: Final = r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]|\\u[dD][89a-fA-F]"


def json_document(text: str) -> object | None:
    """The document read by the standard library's json when it is a JSON object that PyYAML reads the same, so
    that a JSON configuration does not import PyYAML at cold start (about 100 M instructions; `sam build` rewrites
    the bundled YAML files as JSON: weasis_link_dev.bundled_config). None: PyYAML must read it."""
    if not text.lstrip(" \n\r").startswith("{") or re.search(_NOT_AS_IN_YAML, text):
        return None
    try:
        document: object = json.loads(text, parse_float=_float_as_in_yaml, parse_constant=_not_as_in_yaml)
    except ValueError:
        return None  # not JSON (comments, unquoted keys...), or JSON that YAML reads otherwise: YAML's turn
    return document


def _parse_document(text: str, path: Path) -> object:
    """The document as PyYAML reads it (json_document's when it is plain JSON)."""
    document = json_document(text)
    if document is not None:
        return document
    import yaml  # only for a document that is not plain JSON

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"{path}:{where} is not valid YAML") from None


def _float_as_in_yaml(literal: str) -> float:
    if "e" in literal or "E" in literal:
        raise ValueError(literal)  # YAML 1.1 reads 1e3 as a string and 1.0e3 too: its exponent needs a sign
    return float(literal)


def _not_as_in_yaml(literal: str) -> object:
    raise ValueError(literal)  # NaN, Infinity: not JSON, and plain strings to YAML


def _resolve_files(config: AppConfig, path: Path) -> AppConfig:
    """Files the connectors read (init-script, TLS certificates and keys, CA bundles) must exist now, at cold start,
    not at the first request. A relative path is looked up next to the configuration file (then, for init-script,
    in the weasis_link package, where the sample archive lives)."""

    def find(value: str, key: str, *, package: bool = False) -> str:
        candidates = [Path(value)] if Path(value).is_absolute() else [path.parent / value]
        if package and not Path(value).is_absolute():
            candidates.append(Path(__file__).parent / value)
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ConfigurationError(f"{path}: {key}: file not found")
        return str(found)

    connectors = dict(config.connector.config)
    for cid, c in connectors.items():
        where = f"connector.config.{cid}"
        update: dict[str, Any] = {}
        if c.db_connector is not None and c.db_connector.init_script:
            script = find(c.db_connector.init_script, f"{where}.db-connector.init-script", package=True)
            update["db_connector"] = c.db_connector.model_copy(update={"init_script": script})
        tls = c.dicom_connector.tls if c.dicom_connector is not None else None
        if c.dicom_connector is not None and tls is not None:
            files = {
                name: find(value, f"{where}.dicom-connector.tls.{_kebab(name)}")
                for name in ("ca_file", "cert_file", "key_file")
                if (value := getattr(tls, name))
            }
            update["dicom_connector"] = c.dicom_connector.model_copy(update={"tls": tls.model_copy(update=files)})
        web = c.dicom_web_connector
        if web is not None and web.ca_file:
            ca = find(web.ca_file, f"{where}.dicom-web-connector.ca-file")
            update["dicom_web_connector"] = web.model_copy(update={"ca_file": ca})
        if update:
            connectors[cid] = c.model_copy(update=update)
    return config.model_copy(update={"connector": config.connector.model_copy(update={"config": connectors})})


def _prepare(node: Any, env: Mapping[str, str], resolve: SecretResolver, path: Path, loc: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {k: _prepare(v, env, resolve, path, (*loc, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [_prepare(v, env, resolve, path, (*loc, str(i))) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    value = _interpolate(node, env, path, loc)
    if loc and loc[-1] in SECRET_KEYS and _is_reference(value):
        try:
            return resolve(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}: {'.'.join(loc)}: {exc.detail}") from None
    return value


def _interpolate(value: str, env: Mapping[str, str], path: Path, loc: tuple[str, ...]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m[1], m[2]
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigurationError(f"{path}: {'.'.join(loc)}: environment variable {name} is not set")

    return _ENV_REF.sub(sub, value)


def _is_reference(value: str) -> bool:
    return value.startswith(("secretsmanager:", "ssm:", "env:"))


def _describe(error: Mapping[str, object]) -> str:
    loc = error.get("loc") or ()
    parts = [str(p) for p in loc] if isinstance(loc, tuple) else []
    # pydantic reports dict keys and model names; keep the YAML path the user wrote.
    key = ".".join(p for p in parts if p not in ("function-after", "function-before", "[key]"))
    return f"{key or '(top level)'}: {error.get('msg')}"
