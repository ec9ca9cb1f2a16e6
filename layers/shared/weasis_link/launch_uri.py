"""The weasis:// launch URI (Weasis's weasis:// protocol handler).

`weasis://?` + form-encode(`$dicom:get -w "<manifest URL>"` [` $weasis:config cdb="…" pro="key value" arg="…"`]).
The launcher URL-decodes the whole URI once and splits it on `$`, so no `$` may appear inside a value, and a `"`
would end the quoted value early: both are refused, never escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote_plus, urlsplit

from weasis_link.errors import FieldProblem, InvalidRequest

SCHEME: Final = "weasis://?"
# Windows browsers cut long weasis:// URIs (weasis-facts takeaway 5); a short manifest link leaves room for options.
MAX_LAUNCH_URI: Final = 500
MAX_LAUNCH_VALUE: Final = 1024
# Keys the Weasis launcher itself refuses since Aug 2026 (#888); refusing them here gives a clear 400 instead of
# a silent no-op in the viewer.
PROTECTED_PROPERTIES: Final = frozenset(
    {"weasis.source.id", "weasis.path", "weasis.codebase.local", "weasis.config.hash"}
)
PROTECTED_PREFIXES: Final = ("java.", "javax.", "jdk.", "sun.", "os.", "user.")
PATH_CHECKED_PROPERTIES: Final = frozenset({"weasis.profile", "weasis.user"})
# `$` splits commands, `"` ends the quoted value; `'` is a quote for the launcher's argument splitter too, and a
# backslash may escape the closing quote: any of them could move text out of its value into a new argument.
_UNSAFE: Final = re.compile(r'[$"\'\\\x00-\x1f\x7f]')
# RFC 3986 characters minus the quote ' (a quoting character for the launcher's argument parsers); a backslash
# would escape the closing double quote.
_URL: Final = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!&()*+,;=%]+")
_PROPERTY_KEY: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PATH_LIKE: Final = re.compile(r"[/\\]|\.\.|^~|^[A-Za-z]:")


@dataclass(frozen=True, slots=True)
class LaunchOptions:
    """`$weasis:config` arguments passed through from the request: cdb, pro (repeatable), arg (repeatable)."""

    cdb: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.cdb or self.properties or self.args)


def launch_options_from_pairs(pairs: Iterable[tuple[str, str]]) -> LaunchOptions:
    problems: list[FieldProblem] = []
    cdb: str | None = None
    properties: list[tuple[str, str]] = []
    args: list[str] = []
    for name, value in pairs:
        if name not in ("cdb", "pro", "arg"):
            continue
        if len(value) > MAX_LAUNCH_VALUE or _UNSAFE.search(value):
            problems.append(FieldProblem(name, "must not contain $, quotes, backslashes or control characters"))
            continue
        if name == "cdb":
            if cdb is not None:
                problems.append(FieldProblem("cdb", "must be given once"))
            elif value.strip():
                parts = urlsplit(value.strip())
                if parts.scheme not in ("http", "https") or not parts.netloc or not _URL.fullmatch(value.strip()):
                    problems.append(FieldProblem("cdb", "must be an http(s) URL (or empty for the installed Weasis)"))
                else:
                    cdb = value.strip()
        elif name == "pro":
            key, _, prop_value = value.strip().partition(" ")
            problem = _property_problem(key, prop_value.strip())
            if problem:
                problems.append(FieldProblem("pro", problem))
            else:
                properties.append((key, prop_value.strip()))
        elif value.strip():
            args.append(value.strip())
    if problems:
        raise InvalidRequest("The launch options are not valid.", problems)
    return LaunchOptions(cdb=cdb, properties=tuple(properties), args=tuple(args))


def _property_problem(key: str, value: str) -> str | None:
    if not _PROPERTY_KEY.fullmatch(key) or not value:
        return "must be 'key value' (a property name, a space, a value)"
    if key.lower() in PROTECTED_PROPERTIES or key.lower().startswith(PROTECTED_PREFIXES):
        return f"the property {key} is protected by Weasis and cannot be set from a link"
    if key in PATH_CHECKED_PROPERTIES and _PATH_LIKE.search(value):
        return f"the property {key} cannot be a path"
    return None


def weasis_uri(manifest_url: str, options: LaunchOptions | None = None) -> str:
    """The launch URI for a manifest URL, with optional `$weasis:config` arguments."""
    if not _URL.fullmatch(manifest_url) or "$" in manifest_url:
        raise ValueError("a manifest URL cannot contain $, quotes, backslashes, spaces or control characters")
    command = f'$dicom:get -w "{manifest_url}"'
    if options is not None and not options.empty:
        parts = []
        if options.cdb:
            parts.append(f'cdb="{options.cdb}"')
        parts.extend(f'pro="{k} {v}"' for k, v in options.properties)
        parts.extend(f'arg="{a}"' for a in options.args)
        command += " $weasis:config " + " ".join(parts)
    return SCHEME + quote_plus(command, safe="")


def bounded_weasis_uri(manifest_url: str, options: LaunchOptions | None = None) -> str:
    """`weasis_uri`, refused with a 400 when the launch options make it longer than MAX_LAUNCH_URI."""
    uri = weasis_uri(manifest_url, options)
    if len(uri) > MAX_LAUNCH_URI:
        raise InvalidRequest(
            f"The launch URI would be {len(uri)} characters long; browsers on Windows cut weasis:// URIs longer "
            f"than about {MAX_LAUNCH_URI}.",
            [FieldProblem("cdb/pro/arg", f"shorten the launch options (at most {MAX_LAUNCH_URI} characters in all)")],
        )
    return uri
