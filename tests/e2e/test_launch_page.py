"""The browser launch page in headless Chromium (Debian's `chromium`, driven by playwright; never `playwright
install`): it loads without console errors, its link carries the launch URI (whose manifest is the one asked for),
it shows the expiry and the "Weasis not installed?" fallback, it is accessible, and the link works without
JavaScript."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from weasis_link_dev.pytest_stack import StackHandle
from weasis_link_dev.weasis_client import fetch_manifest, manifest_url_of, read_manifest, validate

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENSURE_PACKAGES = Path(__file__).resolve().parents[2] / "tools" / "ensure-debian-packages"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    subprocess.run([str(ENSURE_PACKAGES), "chromium", "chromium-driver"], check=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


class PageVisit:
    """One page in a fresh context, recording console messages, page errors and failed requests."""

    def __init__(self, browser: Any, javascript: bool = True) -> None:
        self.context = browser.new_context(java_script_enabled=javascript, locale="en-GB", timezone_id="UTC")
        self.page = self.context.new_page()
        self.console: list[tuple[str, str]] = []
        self.failed: list[str] = []
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.console.append(("pageerror", str(e))))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any) -> Iterator[Any]:
    opened: list[PageVisit] = []

    def make(javascript: bool = True) -> PageVisit:
        opened.append(PageVisit(browser, javascript))
        return opened[-1]

    yield make
    for v in opened:
        v.close()


def test_launch_page_opens_weasis_and_offers_the_fallback(local_stack: StackHandle, visit: Any) -> None:
    v = visit()
    token = local_stack.token()
    # The page opens Weasis by itself (after 300 ms): headless Chromium has no handler for weasis://, so the
    # automatic launch shows as a failed request. Wait for that event, however long the machine takes.
    with v.page.expect_event("requestfailed", lambda r: r.url.startswith("weasis://"), timeout=30_000) as launched:
        response = v.page.goto(f"{local_stack.api_url}/weasis?patientID=WLS-1001&access_token={token}")
    assert response is not None and response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"

    link = v.page.get_by_role("link", name="Open in Weasis")
    uri = link.get_attribute("href")
    assert uri is not None and uri.startswith("weasis://?%24dicom%3Aget+-w+%22") and len(uri) <= 500
    manifest = fetch_manifest(manifest_url_of(uri))
    assert validate(manifest.xml) == []
    [view] = read_manifest(manifest.xml)
    assert {p["PatientID"] for p in view.patients} == {"WLS-1001"}
    assert view.http_tags == {"Authorization": f"Bearer {token}"}
    assert launched.value.url == uri  # the automatic launch opened the link's own URI

    expiry = v.page.locator("time#expires-at")
    shown = dt.datetime.fromisoformat(str(expiry.get_attribute("datetime")).replace("Z", "+00:00"))
    assert dt.timedelta(minutes=4) < shown - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=5)
    assert expiry.inner_text() == shown.strftime("%d %b %Y, %H:%M")  # the script's local (here UTC) rendering
    assert v.page.get_by_role("heading", name="Weasis not installed?").is_visible()
    download = v.page.get_by_role("link", name="Weasis download page")
    assert download.get_attribute("href") == "https://weasis.org/en/getting-started/"
    assert "noreferrer" in str(download.get_attribute("rel"))

    errors = [(kind, text) for kind, text in v.console if kind in ("error", "pageerror", "warning")]
    assert errors == []


def test_launch_page_is_accessible(local_stack: StackHandle, visit: Any) -> None:
    v = visit()
    v.page.goto(f"{local_stack.api_url}/weasis?patientID=WLS-1001&format=html&access_token={local_stack.token()}")
    assert v.page.locator("html").get_attribute("lang") == "en"
    assert v.page.title() == "Open the images in Weasis"
    assert v.page.get_by_role("heading", level=1).inner_text() == "Open the images in Weasis"
    assert v.page.get_by_role("main").count() == 1
    v.page.keyboard.press("Tab")  # the launch link is the first thing the keyboard reaches
    focused = v.page.evaluate("() => [document.activeElement.tagName, document.activeElement.textContent]")
    assert focused == ["A", "Open in Weasis"]
    assert [kind for kind, _ in v.console if kind in ("error", "pageerror")] == []


def test_the_link_works_without_javascript(local_stack: StackHandle, visit: Any) -> None:
    v = visit(javascript=False)
    v.page.goto(f"{local_stack.api_url}/weasis?patientID=WLS-1001&format=html&access_token={local_stack.token()}")
    # Without scripts the only automatic navigation would be a meta refresh: there is none, and once the page is
    # loaded and the network idle, nothing navigated.
    v.page.wait_for_load_state("networkidle")
    assert v.page.locator('meta[http-equiv="refresh" i]').count() == 0
    uri = v.page.get_by_role("link", name="Open in Weasis").get_attribute("href")
    assert uri is not None and uri.startswith("weasis://?")
    assert not any(url.startswith("weasis:") for url in v.failed)  # nothing ran: the link waits for the user
    assert "UTC" in v.page.locator("time#expires-at").inner_text()  # the server's own rendering
    assert validate(fetch_manifest(manifest_url_of(uri)).xml) == []
