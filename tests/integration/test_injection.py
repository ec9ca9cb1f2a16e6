"""Injection attempts are refused or inert: QIDO parameter smuggling, CRLF towards headers, `$` and quotes towards
the weasis:// URI. (SQL: tests/integration/test_database_connector_postgres.py and tests/unit/
test_database_connector.py; XML: tests/unit/test_manifest.py and test_properties.py.)"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import yaml

from weasis_link.config import DicomWebConnectorConfig as DicomWebSettings
from weasis_link.connectors.dicomweb import DicomWebConnector
from weasis_link.errors import InvalidRequest
from weasis_link.http.requests import criteria_from_query_string
from weasis_link_dev.archive_query import ask_archive, instance_uids
from weasis_link_dev.loopback_http import LoopbackServer, no_match
from weasis_link_dev.orthanc import OrthancServer
from weasis_link_dev.pytest_stack import StackFactory, StackHandle

pytestmark = pytest.mark.integration
SMUGGLING = [
    "WLK-0001&StudyInstanceUID=1.2.3",
    "WLK-0001&PatientID=WLK-0002",
    "WLK-0001=WLK-0002",
    "WLK-0001#fragment",
    "WLK-0001%26PatientID%3DWLK-0002",
    "WLK-0001;PatientID=WLK-0002",
    "WLK-0001+WLK-0002",
    "WLK-0001/../../studies",
]
# What the connector may send; anything else in a request's query string was smuggled in.
EXPECTED_PARAMETERS = {"PatientID", "AccessionNumber", "StudyInstanceUID", "includefield", "limit", "offset"}


@pytest.fixture(scope="module")
def recording() -> Iterator[LoopbackServer]:
    """A DICOMweb endpoint on 127.0.0.1 that records every request line and answers no matches."""
    with LoopbackServer(no_match) as server:
        yield server


def ask(url: str, query: str) -> set[str]:
    connector = DicomWebConnector("pacs", DicomWebSettings.model_validate({"url": url}))
    return instance_uids(ask_archive(connector, query, seconds=15)[0])


@pytest.mark.parametrize("key", ["patientID", "accessionNumber"])
@pytest.mark.parametrize("value", SMUGGLING)
def test_qido_values_cannot_smuggle_parameters(recording: LoopbackServer, key: str, value: str) -> None:
    if key == "accessionNumber":
        value = value[:16]
    recording.take()
    assert ask(recording.url("/dicom-web"), f"{key}={quote(value, safe='')}") == set()
    targets = [r.target for r in recording.take()]
    assert targets
    for request in targets:
        parts = urlsplit(request)
        assert "#" not in request and "\r" not in request and "\n" not in request
        assert parts.path.startswith("/dicom-web/studies")  # no path traversal out of the DICOMweb root
        names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
        assert set(names) <= EXPECTED_PARAMETERS, request
        assert names.count("PatientID") + names.count("AccessionNumber") <= 1, request
        assert "StudyInstanceUID" not in names, request


@pytest.mark.parametrize("value", SMUGGLING)
def test_smuggled_values_find_nothing_on_a_real_pacs(orthanc: OrthancServer, value: str) -> None:
    # The PACS may widen the match (we send wildcards where it cannot decode), never the answer we give.
    assert ask(orthanc.dicomweb_url, f"patientID={quote(value, safe='')}") == set()


@pytest.mark.parametrize(
    "query",
    [
        "patientID=WLK-0001%0D%0ALocation:%20https://evil.example",
        "patientID=WLK-0001%0ASet-Cookie:%20x=1",
        "accessionNumber=A%0D%0AB",
        "archive=x%0D%0Ay&patientID=WLK-0001",
    ],
)
def test_control_characters_in_criteria_are_refused(query: str) -> None:
    with pytest.raises(InvalidRequest):
        criteria_from_query_string(query)


@pytest.fixture(scope="module")
def options_stack(local_stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> StackHandle:
    """Launch options allowed (refused by default), so that their syntax checks are what refuses these values."""
    bundled = pathlib.Path(__file__).resolve().parents[2] / "functions/api/weasis-link.yaml"
    config = yaml.safe_load(bundled.read_text())
    config["launch-options"] = {"cdb": ["https://a.example"], "pro": ["weasis.aet"], "arg": ["dicom:close --all"]}
    path = tmp_path_factory.mktemp("injection") / "weasis-link.yaml"
    path.write_text(json.dumps(config))
    return local_stack_factory(config=path)


@pytest.mark.parametrize(
    "extra",
    [
        "pro=weasis.aet%20X%0D%0ALocation:%20https://evil.example",
        "cdb=https://a.example/%0D%0AX:%201",
        "arg=dicom:close%0D%0A",
        "pro=weasis.aet%20%24dicom:close%20--all",
        "arg=%24dicom:get%20-w%20https://evil.example/m.xml",
        "pro=weasis.aet%20%22x%22",
        "cdb=https://a.example/%22%20%24weasis:config",
        "pro=java.class.path%20/tmp",
    ],
)
def test_launch_values_reaching_headers_or_the_weasis_uri_are_refused(options_stack: StackHandle, extra: str) -> None:
    local_stack = options_stack
    status, headers, body = local_stack.get(f"/weasis?patientID=WLS-1001&{extra}", local_stack.token())
    assert status == 400, body
    assert json.loads(body)["type"] == "urn:weasis-link:problem:invalid-request"
    assert all("\r" not in v and "\n" not in v for v in headers.values())
    assert "Location" not in headers


def test_accepted_values_cannot_break_out_of_the_launch_uri(options_stack: StackHandle) -> None:
    local_stack = options_stack
    status, headers, _ = local_stack.get("/weasis?patientID=WLS-1001&pro=weasis.aet%20A%26B%3DC", local_stack.token())
    assert status == 302
    location = headers["Location"]
    assert location.startswith("weasis://?") and "\r" not in location and "\n" not in location
    from weasis_link_dev.weasis_client import parse_launch_uri

    commands = parse_launch_uri(location)
    assert set(commands) == {"dicom:get", "weasis:config"}
    assert commands["weasis:config"] == [["pro=weasis.aet A&B=C"]]
