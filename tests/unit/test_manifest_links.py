"""Short manifest links: the API's base URL, and GET /manifests/{id} waiting for a manifest being built."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest

from weasis_link.errors import InvalidRequest, ManifestNotFound
from weasis_link.http.requests import api_base_url
from weasis_link.manifest_links import MAX_SELF_REDIRECTS, InlineManifest, ManifestLinks, Redirect
from weasis_link.storage import ManifestStore, new_manifest_id
from weasis_link_dev.weasis_client import read_manifest, validate

NOW = 1_795_342_530.0
BASE = "https://api.example.org"


@pytest.mark.parametrize(
    ("public", "domain", "stage", "expected"),
    [
        (
            None,
            "abc.execute-api.eu-central-1.amazonaws.com",
            "$default",
            "https://abc.execute-api.eu-central-1.amazonaws.com",
        ),
        (
            None,
            "abc.execute-api.eu-central-1.amazonaws.com",
            "prod",
            "https://abc.execute-api.eu-central-1.amazonaws.com/prod",
        ),
        (None, "127.0.0.1:3000", "$default", "http://127.0.0.1:3000"),
        (None, "localhost:8080", None, "http://localhost:8080"),
        (
            "https://viewer.example.org/",
            "abc.execute-api.eu-central-1.amazonaws.com",
            "$default",
            "https://viewer.example.org",
        ),
    ],
)
def test_base_url(public: str | None, domain: str, stage: str | None, expected: str) -> None:
    assert api_base_url(public, domain, stage) == expected


@pytest.mark.parametrize("domain", [None, "", "evil.example/path", 'a"b', "a b", "x$y"])
def test_unusable_host_names_are_refused(domain: str | None) -> None:
    with pytest.raises(InvalidRequest):
        api_base_url(None, domain, "$default")


class Clock:
    """time.time, time.monotonic and time.sleep for one test: sleeping moves both clocks."""

    def __init__(self) -> None:
        self.now = NOW
        self.mono = 1000.0
        self.slept = 0.0
        self.on_sleep: list[object] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds
        self.slept += seconds
        for hook in list(self.on_sleep):
            assert callable(hook)
            hook()


@pytest.fixture
def store(manifest_store: ManifestStore) -> ManifestStore:
    return manifest_store


@pytest.fixture
def clock() -> Clock:
    return Clock()


def links(store: ManifestStore, clock: Clock) -> ManifestLinks:
    return ManifestLinks(store, 300, clock=clock)


def expiring_in(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(NOW + seconds, tz=dt.UTC)


def test_a_stored_manifest_redirects_to_a_short_lived_presigned_url(store: ManifestStore, clock: Clock) -> None:
    manifest_id = new_manifest_id(expiring_in(300))
    store.put(manifest_id, b"\x1f\x8b", expiring_in(300))
    answer = links(store, clock).open(manifest_id, 0, BASE, 25)
    assert isinstance(answer, Redirect)
    url = urlsplit(answer.location)
    assert url.path == f"/manifests/{manifest_id}.xml.gz"
    assert parse_qs(url.query)["X-Amz-Expires"] == ["60"]
    assert clock.slept == 0


def test_presigned_url_never_outlives_the_manifest(store: ManifestStore, clock: Clock) -> None:
    manifest_id = new_manifest_id(expiring_in(7))
    store.put(manifest_id, b"\x1f\x8b", expiring_in(7))
    answer = links(store, clock).open(manifest_id, 0, BASE, 25)
    assert isinstance(answer, Redirect)
    assert parse_qs(urlsplit(answer.location).query)["X-Amz-Expires"] == ["7"]


@pytest.mark.parametrize(
    "manifest_id",
    [
        "nope",
        "../../etc/passwd",
        "1795342530-" + "a" * 31,
        "1795342530-" + "a" * 31 + "$",
        f"{int(NOW) - 1}-" + "a" * 32,  # expired
        f"{int(NOW) + 300}-" + "a" * 32,  # well-formed, never issued
    ],
)
def test_unknown_malformed_or_expired_ids_are_not_found(store: ManifestStore, clock: Clock, manifest_id: str) -> None:
    with pytest.raises(ManifestNotFound):
        links(store, clock).open(manifest_id, 0, BASE, 25)
    assert clock.slept == 0


def test_waits_for_a_manifest_being_built(store: ManifestStore, clock: Clock) -> None:
    manifest_id = new_manifest_id(expiring_in(300))
    store.put_pending(manifest_id, expiring_in(300), NOW + 35)
    store_at = NOW + 3

    def builder_finishes() -> None:
        if clock.now >= store_at and not store.exists(manifest_id):
            store.put(manifest_id, b"\x1f\x8b", expiring_in(300))

    clock.on_sleep.append(builder_finishes)
    answer = links(store, clock).open(manifest_id, 0, BASE, 25)
    assert isinstance(answer, Redirect) and ".xml.gz" in answer.location
    assert 3 <= clock.slept < 4  # polls often at first, at most every 0.5 s


def test_a_build_outliving_the_wait_redirects_to_the_link_again_then_says_not_ready(
    store: ManifestStore, clock: Clock
) -> None:
    manifest_id = new_manifest_id(expiring_in(300))
    store.put_pending(manifest_id, expiring_in(300), NOW + 3600)
    answers = [links(store, clock).open(manifest_id, attempt, BASE, 10) for attempt in range(MAX_SELF_REDIRECTS + 1)]
    assert answers[0] == Redirect(f"{BASE}/manifests/{manifest_id}?attempt=1", to_manifest=False)
    assert answers[1] == Redirect(f"{BASE}/manifests/{manifest_id}?attempt=2", to_manifest=False)
    last = answers[2]
    assert isinstance(last, InlineManifest) and last.reason == "not-ready"
    assert validate(last.xml) == []
    [view] = read_manifest(last.xml)
    assert view.message is not None and view.message["severity"] == "WARN" and not view.instances
    assert clock.slept == pytest.approx(30)


def test_a_build_past_its_deadline_is_an_error_manifest(store: ManifestStore, clock: Clock) -> None:
    manifest_id = new_manifest_id(expiring_in(300))
    store.put_pending(manifest_id, expiring_in(300), NOW + 2)
    answer = links(store, clock).open(manifest_id, 0, BASE, 25)
    assert isinstance(answer, InlineManifest) and answer.reason == "build-lost"
    assert validate(answer.xml) == []
    [view] = read_manifest(answer.xml)
    assert view.message is not None and view.message["severity"] == "ERROR"
    assert clock.slept < 3


def test_pending_markers_expire_with_their_manifest(store: ManifestStore) -> None:
    expired, live = new_manifest_id(expiring_in(-1)), new_manifest_id(expiring_in(300))
    store.put_pending(expired, expiring_in(-1), NOW)
    store.put(expired, b"x", expiring_in(-1))
    store.put_pending(live, expiring_in(300), NOW + 35)
    report = store.delete_expired(NOW)
    assert report.deleted == 2 and report.skipped == 0  # ours, so no HeadObject per key
    assert store.build_deadline(expired) is None
    assert store.build_deadline(live) == int(NOW + 35)
