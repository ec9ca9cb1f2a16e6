"""Manifest-id fingerprints: what logs say instead of a manifest id.

A manifest id is a capability: whoever reads it opens `/manifests/{id}` and gets the patient data plus the caller's
bearer token. Logs carry `manifest_fingerprint(id)` instead: 48 bits of its SHA-256, the same in every function (the
launch and the build correlate) and useless for opening it (the id holds 192 random bits). The log formatter
(observability.redact) also rewrites any id that slips into a line, as the last line of defence.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

FINGERPRINT_LENGTH: Final = 12
# storage.MANIFEST_ID, found inside any text (a path, a URL, a message).
MANIFEST_ID_IN_TEXT: Final = re.compile(r"(?<![A-Za-z0-9_-])\d{10}-[A-Za-z0-9_-]{32}(?![A-Za-z0-9_-])")


def manifest_fingerprint(manifest_id: str) -> str:
    return "m-" + hashlib.sha256(manifest_id.encode("utf-8")).hexdigest()[:FINGERPRINT_LENGTH]
