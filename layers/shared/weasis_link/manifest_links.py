"""Short manifest links: `<api>/manifests/{id}` in the launch URI, answered by a 302 to a fresh presigned URL.

Why (weasis-facts takeaways 4, 5): a presigned URL signed with Lambda's temporary credentials is over 1,000
characters and Windows browsers cut long weasis:// URIs; Weasis follows up to 3 redirects and sends no credentials
when it fetches a manifest, so the unguessable id is the capability. The link has no extension, so Weasis <= 4.7.1
(gzip decided by the extension of the URL it was given) falls back to sniffing the gzip magic bytes, as 4.7.2+
always does: the gzipped object works under both rules.

While the manifest is being built (launch while building), `open` waits for it up to a bound below API Gateway's
29 s limit and Weasis's 30 s read timeout. If the build outlives that bound, the link redirects to itself with
`?attempt=n` (at most MAX_SELF_REDIRECTS times, so that the final redirect to S3 is still within Weasis's 3), and
after that it answers a manifest whose <Message> says the images are not ready yet. A build that has passed its
deadline without storing anything (the builder crashed or was never run) is answered with an ERROR <Message>.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Final, Protocol

from weasis_link import manifest as mf
from weasis_link.errors import ManifestNotFound
from weasis_link.storage import ManifestStore, expiry_of

MANIFESTS_PATH: Final = "/manifests/"
# Weasis follows 3 redirects: two to this link again, the last one to S3.
MAX_SELF_REDIRECTS: Final = 2
# Long enough for Weasis to follow it at once, short enough to be useless if it leaks from a log later.
REDIRECT_PRESIGN_SECONDS: Final = 60
SERVICE_ARC_ID: Final = "weasis-link"


def short_link(base_url: str, manifest_id: str) -> str:
    return f"{base_url}{MANIFESTS_PATH}{manifest_id}"


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str
    to_manifest: bool = True  # False: to this link again (the manifest is still being built)


@dataclass(frozen=True, slots=True)
class InlineManifest:
    """A manifest answered directly (plain XML), when there is no stored one to redirect to."""

    xml: bytes
    reason: str  # for logs and metrics: not-ready | build-lost


ManifestAnswer = Redirect | InlineManifest


def message_manifest(base_url: str, title: str, description: str, severity: mf.Severity) -> bytes:
    """A valid manifest holding only a <Message>: Weasis shows it in a dialog (weasis-facts §1.4)."""
    query = mf.ArchiveQuery(arc_id=SERVICE_ARC_ID, base_url=base_url)
    query.add_message(mf.Message(title, description, severity))
    return mf.manifest_xml([query], str(uuid.uuid4()))


class Clock(Protocol):
    """What waiting for a build reads: wall time (expiries), a monotonic clock (the wait) and a sleep. The `time`
    module is one; tests pass one that moves only when slept on."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...


@dataclass(frozen=True, slots=True)
class ManifestLinks:
    """Answers GET /manifests/{id}."""

    store: ManifestStore
    presign_expires_seconds: int
    clock: Clock = time

    def open(self, manifest_id: str, attempt: int, base_url: str, wait_seconds: float) -> ManifestAnswer:
        """A redirect to the stored manifest, waiting up to `wait_seconds` for one being built."""
        expires_at = expiry_of(manifest_id)
        if expires_at is None:
            raise ManifestNotFound("This manifest link is not valid.")
        if expires_at.timestamp() <= self.clock.time():
            raise ManifestNotFound("This manifest has expired; open the viewer again from its source.")
        wait_until = self.clock.monotonic() + max(0.0, wait_seconds)
        deadline: float | None = None
        pause = 0.05
        while True:
            if self.store.exists(manifest_id):
                return Redirect(self._presigned(manifest_id, expires_at))
            if deadline is None:
                deadline = self.store.build_deadline(manifest_id)
                if deadline is None:
                    raise ManifestNotFound("This manifest does not exist or has expired.")
            if self.clock.time() > deadline:
                # One last look: the build may have stored it between the two reads.
                if self.store.exists(manifest_id):
                    return Redirect(self._presigned(manifest_id, expires_at))
                return InlineManifest(
                    message_manifest(
                        base_url,
                        "The images could not be prepared",
                        "The list of images was not built in time. Open the viewer again from its source; "
                        "if this keeps happening, tell your administrator.",
                        "ERROR",
                    ),
                    "build-lost",
                )
            left = wait_until - self.clock.monotonic()
            if left <= 0:
                break
            self.clock.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)
        if attempt < MAX_SELF_REDIRECTS:
            return Redirect(f"{short_link(base_url, manifest_id)}?attempt={attempt + 1}", to_manifest=False)
        return InlineManifest(
            message_manifest(
                base_url,
                "The images are not ready yet",
                "The archive is taking longer than usual to list the images. Open the same link again in a minute.",
                "WARN",
            ),
            "not-ready",
        )

    def _presigned(self, manifest_id: str, expires_at: dt.datetime) -> str:
        left = int(expires_at.timestamp() - self.clock.time())
        return self.store.presigned_url(
            manifest_id, max(1, min(self.presign_expires_seconds, REDIRECT_PRESIGN_SECONDS, left))
        )
