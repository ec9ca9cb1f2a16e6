"""The weasis:// URI, read back the way the Weasis launcher reads it."""

from __future__ import annotations

import pytest

from weasis_link.errors import InvalidRequest
from weasis_link.launch_uri import (
    MAX_LAUNCH_URI,
    LaunchOptions,
    bounded_weasis_uri,
    launch_options_from_pairs,
    weasis_uri,
)
from weasis_link_dev.weasis_client import manifest_url_of, parse_launch_uri

PRESIGNED = (
    "https://b.s3.eu-central-1.amazonaws.com/manifests/1795342530-abc.xml.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20261122%2Feu-central-1%2Fs3%2Faws4_request&X-Amz-Signature=00ff"
)


def test_uri_is_form_encoded_dicom_get_with_the_manifest_url() -> None:
    uri = weasis_uri(PRESIGNED)
    assert uri.startswith("weasis://?%24dicom%3Aget+-w+%22https%3A%2F%2F")
    assert manifest_url_of(uri) == PRESIGNED


def test_config_arguments_survive_the_launchers_decode_and_split() -> None:
    options = LaunchOptions(cdb="https://viewer.example/weasis", properties=(("weasis.aet", "MY AET"),), args=("x",))
    commands = parse_launch_uri(weasis_uri(PRESIGNED, options))
    assert commands["dicom:get"] == [["-w", PRESIGNED]]
    assert commands["weasis:config"] == [["cdb=https://viewer.example/weasis", "pro=weasis.aet MY AET", "arg=x"]]


@pytest.mark.parametrize(
    "bad", ['https://x/a"b', "https://x/$y", "https://x/a b", "https://x/\n", "https://x/a\\", "https://x/'"]
)
def test_unsafe_manifest_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot contain"):
        weasis_uri(bad)


@pytest.mark.parametrize(
    ("pairs", "field"),
    [
        ([("pro", "weasis.path /etc")], "pro"),
        ([("pro", "java.home /x")], "pro"),
        ([("pro", "user.dir x")], "pro"),
        ([("pro", "weasis.user ../../admin")], "pro"),
        ([("pro", "justakey")], "pro"),
        ([("pro", "weasis.aet $dicom:close")], "pro"),
        ([("arg", 'x" $dicom:close --all "')], "arg"),
        ([("cdb", "file:///etc/passwd")], "cdb"),
        ([("cdb", "https://a"), ("cdb", "https://b")], "cdb"),
    ],
)
def test_unsafe_or_protected_launch_options_are_refused(pairs: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        launch_options_from_pairs(pairs)
    assert [p.field for p in err.value.problems] == [field]


def test_allowed_launch_options_are_passed_through() -> None:
    options = launch_options_from_pairs(
        [("pro", "weasis.aet WEASISLINK"), ("cdb", ""), ("arg", "dicom:close --all"), ("patientID", "x")]
    )
    assert options == LaunchOptions(cdb=None, properties=(("weasis.aet", "WEASISLINK"),), args=("dicom:close --all",))


@pytest.mark.parametrize(
    "pro",
    [
        "weasis.aet it's",  # a quote of the launcher's argument splitter: could end the value early
        "weasis.aet a\\",  # a backslash could escape the closing quote
        "Java.home x",  # protected prefixes are matched case-insensitively
        "WEASIS.PATH x",
    ],
)
def test_quotes_backslashes_and_protected_keys_in_any_case_are_refused(pro: str) -> None:
    with pytest.raises(InvalidRequest):
        launch_options_from_pairs([("pro", pro)])


def test_launch_uris_longer_than_windows_browsers_keep_are_refused() -> None:
    link = "https://abc123.execute-api.eu-central-1.amazonaws.com/manifests/1795342830-" + "a" * 32
    assert len(bounded_weasis_uri(link, LaunchOptions(properties=(("weasis.aet", "WEASISLINK"),)))) <= MAX_LAUNCH_URI
    many = LaunchOptions(properties=tuple((f"weasis.p{i}", "x" * 50) for i in range(6)))
    with pytest.raises(InvalidRequest, match="characters") as err:
        bounded_weasis_uri(link, many)
    assert err.value.problems[0].field == "cdb/pro/arg"
