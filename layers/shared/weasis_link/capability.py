"""A capability never outlives its token.

A manifest's short link and presigned URL need no token: whoever holds them reads the manifest. SMART Imaging Access
(draft) says such a capability SHALL expire no later than the token that authorised it. So a manifest expires at
the earlier of MANIFEST_TTL_SECONDS from now and the caller's token `exp`, and both links die with it (the short
link's id encodes that expiry; presigned URLs are signed for at most what is left).

The floor: Weasis must still be able to start and fetch the manifest. A token with less than
MANIFEST_MIN_TTL_SECONDS left is refused with 401 `token-expires-too-soon` rather than given a manifest that
would expire under Weasis's feet: the client's remedy (refresh the token, try again) is the same as for an
expired token, and a clear refusal beats a viewer that opens on nothing.
"""

from __future__ import annotations

import datetime as dt

from weasis_link.errors import TokenExpiresTooSoon


def capped_expiry(ttl_expiry: dt.datetime, token_expires_at: float, now: float, floor_seconds: int) -> dt.datetime:
    """min(ttl_expiry, token exp), in whole seconds; TokenExpiresTooSoon when the token has < floor_seconds left."""
    left = int(token_expires_at) - int(now)
    if left < floor_seconds:
        raise TokenExpiresTooSoon(
            f"The token expires in {max(0, left)} s: too soon to open the viewer (at least {floor_seconds} s are "
            "needed). Get a fresh token and try again."
        )
    token_expiry = dt.datetime.fromtimestamp(int(token_expires_at), tz=dt.UTC)
    return min(ttl_expiry, token_expiry)
