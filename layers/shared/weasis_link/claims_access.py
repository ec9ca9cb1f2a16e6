"""Archive access by claims, and the scopes each kind of route requires.

A connector may carry an `access` rule; a caller whose token does not satisfy it never causes a query to that
archive (it is left out of the default archives; naming it with `archive=` is 403 `archive-forbidden`):

```yaml
connector:
  config:
    research-pacs:
      access:
        any-of:                                   # one matching condition is enough
          - {claim: cognito:groups, contains: radiology}
          - {claim: roles, contains: Images.Read}             # Entra ID app roles
          - {claim: realm_access.roles, contains: pacs-read}  # Keycloak realm roles (a dotted path)
```

A claim path is dotted (`realm_access.roles`, `resource_access.weasis.roles`); a claim whose own name holds dots
(Auth0's namespaced `https://example.org/roles`) is found too: the longest name that exists wins at each level.
`contains` holds when the claim is a list holding the value, a string equal to it, or a space-separated string
(a `scope`) holding it. No `access` block: every authenticated caller may use the archive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from weasis_link.errors import ArchiveForbidden, InsufficientScope

_MISSING = object()


class ClaimConditionConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    claim: str = Field(min_length=1, max_length=256, description="dotted path into the token's claims")
    contains: str = Field(min_length=1, max_length=256)

    def holds(self, claims: Mapping[str, Any]) -> bool:
        value = claim_value(claims, self.claim)
        if isinstance(value, str):
            return value == self.contains or self.contains in value.split()
        if isinstance(value, list | tuple):
            return any(isinstance(v, str | int) and str(v) == self.contains for v in value)
        return False


class AccessConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    any_of: list[ClaimConditionConfig] = Field(alias="any-of", min_length=1)

    def allows(self, claims: Mapping[str, Any]) -> bool:
        return any(c.holds(claims) for c in self.any_of)


def claim_value(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None. At each level the longest existing key made of the next parts wins,
    so claim names containing dots still resolve."""
    value = _walk(claims, path.split("."))
    return None if value is _MISSING else value


def _walk(node: Any, parts: Sequence[str]) -> Any:
    if not parts:
        return node
    if not isinstance(node, Mapping):
        return _MISSING
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in node:
            found = _walk(node[key], parts[i:])
            if found is not _MISSING:
                return found
    return _MISSING


def permitted_archives(
    archive_ids: Iterable[str], rules: Mapping[str, AccessConfig | None], claims: Mapping[str, Any] | None
) -> list[str]:
    """The archives a caller with these claims may query (claims None: an internal call, no caller to check)."""
    if claims is None:
        return list(archive_ids)
    return [a for a in archive_ids if (rule := rules.get(a)) is None or rule.allows(claims)]


def check_named_archives(
    named: Sequence[str], rules: Mapping[str, AccessConfig | None], claims: Mapping[str, Any] | None
) -> None:
    """`archive=` naming an archive the caller may not use is refused, not silently dropped."""
    refused = [a for a in named if a not in permitted_archives([a], rules, claims)]
    if refused:
        raise ArchiveForbidden(f"Your token does not allow the archive {', '.join(refused)}.")


def require_scopes(scopes: frozenset[str], required: Sequence[str], what: str) -> None:
    """The scopes a route requires on top of OAUTH_REQUIRED_SCOPES (OAUTH_READ_SCOPES, OAUTH_UPLOAD_SCOPES)."""
    missing = [s for s in required if s not in scopes]
    if missing:
        raise InsufficientScope(f"{what} needs the scope {' '.join(missing)}.", tuple(required))
