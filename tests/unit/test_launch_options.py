"""Launch options on allow-lists (weasis_link/launch_options.py): refused unless configured, hard deny-lists."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from weasis_link.errors import InvalidRequest, LaunchOptionNotAllowed
from weasis_link.launch_options import LaunchOptionsConfig, allowed_launch_options, arg_denied, property_denied
from weasis_link.launch_uri import LaunchOptions

POLICY = LaunchOptionsConfig(cdb=["https://viewer.example/weasis/"], pro=["weasis.aet"], arg=[r"dicom:close --all"])


def fields(pairs: list[tuple[str, str]], policy: LaunchOptionsConfig) -> list[str]:
    with pytest.raises(InvalidRequest) as raised:
        allowed_launch_options(pairs, policy)
    # Keys Weasis itself protects fail the syntax check first (a plain 400); the rest are allow-list refusals.
    assert (
        isinstance(raised.value, LaunchOptionNotAllowed) or raised.value.detail == "The launch options are not valid."
    )
    return [p.field for p in raised.value.problems]


def test_nothing_is_allowed_by_default() -> None:
    default = LaunchOptionsConfig()
    assert fields([("cdb", "https://viewer.example/weasis"), ("pro", "weasis.aet X"), ("arg", "x")], default) == [
        "cdb",
        "pro",
        "arg",
    ]
    # No launch option, or an empty cdb (the installed Weasis), is fine.
    assert allowed_launch_options([("patientID", "P"), ("cdb", "")], default) == LaunchOptions()


def test_allowed_values_pass_through() -> None:
    pairs = [("cdb", "https://viewer.example/weasis"), ("pro", "weasis.aet MY AET"), ("arg", "dicom:close --all")]
    assert allowed_launch_options(pairs, POLICY) == LaunchOptions(
        cdb="https://viewer.example/weasis", properties=(("weasis.aet", "MY AET"),), args=("dicom:close --all",)
    )


@pytest.mark.parametrize(
    ("pair", "field"),
    [
        (("cdb", "https://evil.example/weasis"), "cdb"),
        (("pro", "weasis.user x"), "pro"),
        (("pro", "felix.config.properties https://evil.example/c"), "pro"),
        (("arg", "dicom:close --all --patient=X"), "arg"),
        (("arg", "dicom:get -w https://evil.example/m.xml"), "arg"),
        (("arg", "dicom:close -a"), "arg"),
    ],
)
def test_values_outside_the_allow_lists_are_refused(pair: tuple[str, str], field: str) -> None:
    assert fields([pair], POLICY) == [field]


@pytest.mark.parametrize(
    "key",
    [
        "felix.config.properties",
        "weasis.config.url",
        "http.authorization",
        "org.osgi.framework.storage",
        "weasis.codebase.url",
        "java.home",
        "user.dir",
        "https.proxyHost",
        "weasis.pref.url",
        "weasis.help.url",
        "some.token",
        "weasis.path",
        "WEASIS.CONFIG.URL",
    ],
)
def test_dangerous_property_keys_can_never_be_allowed(key: str) -> None:
    assert property_denied(key)
    with pytest.raises(ValidationError, match="can never be allowed"):
        LaunchOptionsConfig(pro=[key])
    # Even a policy object built around the validation cannot admit it.
    forged = LaunchOptionsConfig.model_construct(cdb=[], pro=[key], arg=[])
    assert fields([("pro", f"{key} x")], forged) == ["pro"]


@pytest.mark.parametrize(
    "value",
    [
        "dicom:get -w https://evil.example/m.xml",
        "$dicom:get -r x",
        "dicom:get -l /etc/passwd",
        "dicom:rs -u https://evil.example -r patientID=1",
        "dicom:close --all -z=https://evil.example/x.zip",
        "dicom:close file:///etc/passwd",
        "dicom:close //evil.example/share",
        "dicom:close www.evil.example",
        "",
    ],
)
def test_dangerous_commands_can_never_be_allowed(value: str) -> None:
    assert arg_denied(value)
    forged = LaunchOptionsConfig.model_construct(cdb=[], pro=[], arg=[".*"])
    if value.strip():
        assert fields([("arg", value.lstrip("$"))], forged) == ["arg"]


@pytest.mark.parametrize("pattern", [".*", "dicom:.*", "dicom:get.*", "(dicom:close|dicom:rs).*"])
def test_patterns_admitting_dangerous_commands_fail_the_configuration(pattern: str) -> None:
    with pytest.raises(ValidationError, match="can never be allowed"):
        LaunchOptionsConfig(arg=[pattern])


def test_bad_configuration_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="regular expression"):
        LaunchOptionsConfig(arg=["dicom:close ("])
    with pytest.raises(ValidationError, match="http"):
        LaunchOptionsConfig(cdb=["file:///opt/weasis"])
    with pytest.raises(ValidationError, match="property key"):
        LaunchOptionsConfig(pro=["weasis aet"])
    assert not arg_denied("dicom:close --all") and not property_denied("weasis.aet")
