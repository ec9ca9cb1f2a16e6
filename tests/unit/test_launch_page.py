"""The browser launch page: content negotiation, escaping, and a CSP that allows exactly its own script and style."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re

import pytest
from lxml import html as lxml_html

from weasis_link.errors import InvalidRequest
from weasis_link.http.launch_page import CONTENT_SECURITY_POLICY, launch_page, wants_html

NOW = dt.datetime(2026, 11, 22, 10, 15, tzinfo=dt.UTC)
URI = "weasis://?%24dicom%3Aget+-w+%22https%3A%2F%2Fapi.example.org%2Fmanifests%2F1795342830-abc%22"


@pytest.mark.parametrize(
    ("accept", "formats", "expected"),
    [
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", [], True),
        ("*/*", [], False),
        (None, [], False),
        ("application/json", [], False),
        ("text/html;q=0", [], False),
        ("text/html", ["redirect"], False),
        ("*/*", ["html"], True),
    ],
)
def test_content_negotiation(accept: str | None, formats: list[str], expected: bool) -> None:
    assert wants_html(accept, formats) is expected


@pytest.mark.parametrize("formats", [["xml"], ["html", "html"]])
def test_unknown_formats_are_400(formats: list[str]) -> None:
    with pytest.raises(InvalidRequest):
        wants_html(None, formats)


def page(**kwargs: object) -> str:
    args: dict[str, object] = {
        "weasis_url": URI,
        "expires_at": NOW + dt.timedelta(minutes=5),
        "download_url": "https://weasis.org/en/getting-started/",
        "now": NOW,
    }
    return launch_page(**(args | kwargs))  # type: ignore[arg-type]


def test_the_page_links_to_the_uri_and_says_when_it_expires() -> None:
    doc = lxml_html.fromstring(page())
    assert doc.get("lang") == "en"
    assert doc.findtext(".//title") == "Open the images in Weasis"
    [link] = doc.xpath('//a[@id="open-weasis"]')
    assert link.get("href") == URI and link.text_content().strip() == "Open in Weasis"
    [when] = doc.xpath("//time")
    assert when.get("datetime") == "2026-11-22T10:20:00Z" and "10:20 UTC" in when.text_content()
    assert "in about 5 minutes" in doc.text_content()
    [fallback] = doc.xpath('//a[contains(@href, "weasis.org")]')
    assert "noreferrer" in fallback.get("rel", "")
    assert doc.xpath('//h2[@id="not-installed"]')[0].text_content() == "Weasis not installed?"


def test_everything_is_escaped() -> None:
    text = page(warnings=['<script>alert("x")</script>'], download_url='https://x.example/"><b>')
    assert "<script>alert" not in text and "&lt;script&gt;" in text
    assert '"><b>' not in text


def test_the_csp_allows_exactly_the_inline_script_and_style() -> None:
    text = page()
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        [body] = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY
