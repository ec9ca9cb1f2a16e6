"""The browser launch page: GET /weasis (or /IHEInvokeImageDisplay) with `Accept: text/html` or `format=html`.

A bare 302 to weasis:// leaves a browser without Weasis on a blank tab. This page offers the link as a real,
labelled link (it works without JavaScript), says when it expires, warns when the token will not last, and points
to the Weasis download page. With JavaScript it also opens Weasis once by itself and shows the expiry in local time.

Safe by construction: every value is HTML-escaped; the only script and style are inline and allowed by their
SHA-256 in the Content-Security-Policy (nothing else may load or run); `Referrer-Policy: no-referrer`, because the
page's own URL may carry `access_token`, and the download link must not send it to another site.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
from collections.abc import Mapping, Sequence
from typing import Final

from weasis_link.errors import FieldProblem, InvalidRequest

FORMATS: Final = ("html", "redirect")

_STYLE: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
main{max-width:40rem;margin:3rem auto;padding:2rem;background:#fff;border:1px solid #d0d7de;border-radius:8px}
h1{font-size:1.5rem;margin-top:0}h2{font-size:1.1rem;margin-top:2rem}
.open{display:inline-block;padding:.75rem 1.5rem;border-radius:6px;background:#0a5cad;color:#fff;font-weight:600;
text-decoration:none}
.open:hover{background:#084a8c}.open:focus-visible{outline:3px solid #f0b400;outline-offset:2px}
.warning{border-left:4px solid #9a6700;background:#fff8c5;padding:.75rem 1rem}
a{color:#0a5cad}
"""

_SCRIPT: Final = """
(function () {
  var link = document.getElementById("open-weasis");
  var expiry = document.getElementById("expires-at");
  if (expiry) {
    var when = new Date(expiry.getAttribute("datetime"));
    if (!isNaN(when.getTime())) {
      expiry.textContent = when.toLocaleString([], {dateStyle: "medium", timeStyle: "short"});
    }
  }
  if (link && document.body.getAttribute("data-auto-open") === "true") {
    window.setTimeout(function () { window.location.href = link.href; }, 300);
  }
})();
"""


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; style-src {_sha256(_STYLE)}; script-src {_sha256(_SCRIPT)}; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def wants_html(accept: str | None, format_values: Sequence[str]) -> bool:
    """`format=html|redirect` decides; else a browser (Accept naming text/html, not with q=0) gets the page."""
    if format_values:
        if len(format_values) > 1 or format_values[0] not in FORMATS:
            raise InvalidRequest(
                "format must be html or redirect, once.", [FieldProblem("format", "must be html or redirect")]
            )
        return format_values[0] == "html"
    for item in (accept or "").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() in ("text/html", "application/xhtml+xml"):
            q = next((p.split("=", 1)[1] for p in params if p.lower().startswith("q=")), "1")
            try:
                return float(q) > 0
            except ValueError:
                return True
    return False


def _in_words(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 90:
        return f"{max(0, int(seconds))} seconds"
    return f"{minutes} minutes"


def launch_page(
    weasis_url: str,
    expires_at: dt.datetime,
    download_url: str,
    warnings: Sequence[str] = (),
    *,
    now: dt.datetime | None = None,
    auto_open: bool = True,
) -> str:
    """The page's HTML (UTF-8)."""
    now = now or dt.datetime.now(dt.UTC)
    expiry_iso = expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    expiry_text = expires_at.astimezone(dt.UTC).strftime("%d %b %Y, %H:%M UTC")
    left = _in_words((expires_at - now).total_seconds())
    notes = "".join(f'<p class="warning" role="status">{html.escape(w)}</p>\n' for w in warnings)
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Open the images in Weasis</title>
<link rel="icon" href="data:,">
<style>{_STYLE}</style>
</head>
<body data-auto-open="{"true" if auto_open else "false"}">
<main>
<h1>Open the images in Weasis</h1>
<p>The images are being prepared for the Weasis viewer. If Weasis does not start by itself, use this link:</p>
<p><a id="open-weasis" class="open" href="{e(weasis_url)}">Open in Weasis</a></p>
<p>This link expires on <time id="expires-at" datetime="{expiry_iso}">{e(expiry_text)}</time>
(in about {e(left)}). After that, open the viewer again from where you came.</p>
{notes}<h2 id="not-installed">Weasis not installed?</h2>
<p>Download and install the Weasis viewer from the
<a href="{e(download_url)}" rel="noopener noreferrer">Weasis download page</a>,
then use the <strong>Open in Weasis</strong> link above again.
Your browser may ask whether to open Weasis: allow it.</p>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def page_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**PAGE_HEADERS, **(extra or {})}
