"""Launch options on allow-lists: `cdb`, `pro` and `arg` reach the viewer only when the configuration admits them.

Weasis adds an `arg` value to its command list (no `$` needed) and loads its configuration from `cdb`; a `pro` sets
any launcher property (weasis-facts §2.2). A link that carries them runs what its author chose, on the hospital's
own domain. So, in the connector configuration (docs/configuration.md, "launch-options"; docs/security.md):

```yaml
launch-options:
  cdb: [https://weasis.hospital.example/weasis]   # code bases a link may name (exact match)
  pro: [weasis.aet, weasis.user]                  # property keys a link may set
  arg: ['dicom:close --all']                      # command patterns (regular expressions, whole value)
```

- Absent (the default): a non-empty `cdb`, any `pro` and any `arg` are refused (400 naming the parameter). An empty
  `cdb` (`&cdb` in dcm4chee's IID templates) means "the installed Weasis" and is always accepted.
- Some keys can never be allowed (HARD_DENIED_*): launcher, OSGi and JVM settings, anything that names a URL, a
  path or credentials. Configuring one fails the cold start; a request naming one is refused.
- `arg` never runs `dicom:get` or `dicom:rs`, never takes a local-file, zip or URL option, never holds a URL,
  whatever the patterns say.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from weasis_link.errors import FieldProblem, LaunchOptionNotAllowed
from weasis_link.launch_uri import LaunchOptions, launch_options_from_pairs

LAUNCH_PARAMETERS: Final = ("cdb", "pro", "arg")

# Property keys a link can never set: the launcher's own settings and where it loads code and configuration from
# (weasis-facts §2.2, Weasis #888), OSGi/Felix, the JVM, proxies and credentials.
HARD_DENIED_PROPERTIES: Final = frozenset(
    {
        "felix.config.properties",
        "felix.extensions.properties",
        "weasis.config.url",
        "weasis.pref.url",
        "weasis.codebase.url",
        "weasis.codebase.ext.url",
        "weasis.codebase.local",
        "weasis.source.id",
        "weasis.path",
        "weasis.config.hash",
        "weasis.resources.url",
        "weasis.i18n",
        "weasis.update.release",
        "http.authorization",
        "org.osgi.framework.storage",
        "gosh.args",
    }
)
HARD_DENIED_PREFIXES: Final = (
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "os.",
    "user.",
    "file.",
    "felix.",
    "org.osgi.",
    "org.apache.felix.",
    "obr.",
    "gosh.",
    "http.",
    "https.",
    "ftp.",
    "socks",
    "weasis.codebase.",
    "weasis.config.",
    "weasis.pref.",
    "weasis.resources.",
    "weasis.portable.",
    "weasis.update.",
)
# Key words that mark a property as a location or a secret, wherever they appear in the key.
HARD_DENIED_WORDS: Final = re.compile(r"(?i)(^|\.)(url|uri|path|dir|directory|codebase|authorization|password|token)$")

# Commands and options an `arg` can never carry.
DENIED_COMMANDS: Final = frozenset({"dicom:get", "dicom:rs"})
DENIED_OPTIONS: Final = frozenset(
    {"-l", "--local", "-z", "--zip", "-w", "--wado", "-r", "--remote", "-i", "--iwado", "-u", "--url"}
)
_URL_LIKE: Final = re.compile(r"(?i)[a-z][a-z0-9+.-]*:/|//|\bwww\.")
# What the configured patterns are checked against at cold start: none may admit any of these.
_PROBES: Final = (
    "dicom:get -w https://evil.example/m.xml",
    "dicom:get -l /etc/passwd",
    "dicom:get -z https://evil.example/x.zip",
    "dicom:rs -u https://evil.example/dicom-web -r patientID=1",
    "dicom:close --all https://evil.example",
)
_CODE_BASE: Final = re.compile(r"https?://[A-Za-z0-9\-._~:/\[\]@!&()*+,;=%]+")


def property_denied(key: str) -> bool:
    """Whether a property key is on the hard deny-list (no configuration can allow it)."""
    k = key.lower()
    return k in HARD_DENIED_PROPERTIES or k.startswith(HARD_DENIED_PREFIXES) or HARD_DENIED_WORDS.search(k) is not None


def arg_denied(value: str) -> bool:
    """Whether an `arg` command is one no pattern can admit."""
    tokens = value.split()
    if not tokens:
        return True
    if tokens[0].lstrip("$").lower() in DENIED_COMMANDS:
        return True
    if any(t.split("=", 1)[0].lower() in DENIED_OPTIONS for t in tokens[1:]):
        return True
    return _URL_LIKE.search(value) is not None


class LaunchOptionsConfig(BaseModel):
    """`launch-options`: what links may pass to `$weasis:config`. Empty lists (the default) refuse everything."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    cdb: list[str] = Field(default_factory=list, description="code bases a link may name (exact match)")
    pro: list[str] = Field(default_factory=list, description="property keys a link may set")
    arg: list[str] = Field(default_factory=list, description="command patterns (regular expressions, whole value)")

    @field_validator("cdb")
    @classmethod
    def _code_bases(cls, values: list[str]) -> list[str]:
        for v in values:
            if not _CODE_BASE.fullmatch(v) or "'" in v:
                raise ValueError(f"{v!r} is not an http(s) URL the launcher accepts")
        return [v.rstrip("/") for v in values]

    @field_validator("pro")
    @classmethod
    def _property_keys(cls, values: list[str]) -> list[str]:
        for v in values:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v):
                raise ValueError(f"{v!r} is not a property key")
            if property_denied(v):
                raise ValueError(f"the property {v} can never be allowed (launcher, JVM, location or credentials)")
        return values

    @field_validator("arg")
    @classmethod
    def _command_patterns(cls, values: list[str]) -> list[str]:
        for v in values:
            try:
                pattern = re.compile(v)
            except re.error as exc:
                raise ValueError(f"{v!r} is not a regular expression ({exc.msg})") from None
            if any(pattern.fullmatch(p) for p in _PROBES):
                raise ValueError(f"{v!r} admits dicom:get, dicom:rs or a URL, which can never be allowed")
        return values


def allowed_launch_options(pairs: Iterable[tuple[str, str]], policy: LaunchOptionsConfig) -> LaunchOptions:
    """The request's launch options, each checked against the allow-lists; 400 naming the parameter otherwise."""
    pairs = list(pairs)
    problems: list[FieldProblem] = []
    for name in LAUNCH_PARAMETERS:
        given = [v for k, v in pairs if k == name and (v.strip() or name != "cdb")]
        if given and not getattr(policy, name):
            problems.append(FieldProblem(name, f"is not enabled on this service (launch-options.{name} is empty)"))
    if problems:
        raise LaunchOptionNotAllowed(
            "Launch options are refused unless the service's configuration allows them: remove "
            + ", ".join(p.field for p in problems)
            + " from the link.",
            problems,
        )
    options = launch_options_from_pairs(pairs)  # syntax: no $, quotes, control characters
    if options.cdb is not None and options.cdb.rstrip("/") not in policy.cdb:
        problems.append(FieldProblem("cdb", "is not one of the code bases this service allows; omit it"))
    for key, _ in options.properties:
        if property_denied(key):
            problems.append(FieldProblem("pro", f"the property {key} can never be set from a link"))
        elif key not in policy.pro:
            problems.append(FieldProblem("pro", f"the property {key} is not in launch-options.pro"))
    for value in options.args:
        if arg_denied(value):
            problems.append(FieldProblem("arg", "dicom:get, dicom:rs, file, zip or URL options cannot be passed"))
        elif not any(re.fullmatch(p, value) for p in policy.arg):
            problems.append(FieldProblem("arg", "does not match any pattern of launch-options.arg"))
    if problems:
        raise LaunchOptionNotAllowed("The launch options are not allowed by this service's configuration.", problems)
    return options
