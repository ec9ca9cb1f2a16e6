"""Property tests: whatever a PACS sends, the manifest is valid and every instance is in it exactly once; a valid
query string parses to exactly the criteria it states, an invalid value is a 400 naming its parameter; a launch URI
gives the Weasis launcher exactly the manifest URL and options asked for.

`make test` runs these with the `full` hypothesis profile (10,000 manifests); a plain `pytest` uses `dev`."""

from __future__ import annotations

import datetime as dt
import io
import re
import string
from collections import Counter
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from weasis_link import manifest as mf
from weasis_link.audit import summarize_archives, summarize_manifest
from weasis_link.criteria import PatientIdentifier, QueryCriteria, fold_text
from weasis_link.errors import InvalidRequest
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.launch_uri import (
    PATH_CHECKED_PROPERTIES,
    PROTECTED_PREFIXES,
    PROTECTED_PROPERTIES,
    LaunchOptions,
    launch_options_from_pairs,
    weasis_uri,
)
from weasis_link.study_tree import Instance, StudyTreeBuilder
from weasis_link_dev.weasis_client import XSD_472, manifest_url_of, parse_launch_uri, read_manifest, validate

# The `full` profile's 10,000 manifests take minutes on a shared machine: more than the default test timeout.
pytestmark = pytest.mark.timeout(1800)
# The request properties draw richer input (a whole valid request each): 2,000 examples at most, even in `full`.
REQUEST_EXAMPLES = min(settings().max_examples, 2000)

# Any Unicode, surrogates and control characters included: what a broken PACS or a mis-decoded database gives.
anything = st.text(st.characters(codec=None, categories=None), max_size=90)
odd_values = st.one_of(
    st.none(),
    anything,
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.dates(min_value=dt.date(1, 1, 1)),
    st.times(),
    st.datetimes(),
    st.binary(max_size=20),
    st.sampled_from(["", " ", "M", "f", "Other", "0", "CT\\PT", "20240230", "2024-01-31", "25:61:61", "1.5e3"]),
)
# Clean records live in their own UID space (1.2.826...), so noise can never collide with them.
noise_uid = st.one_of(anything, st.integers(1, 30).map(lambda n: f"9.{n}"), st.just(""), st.none())


PATIENT_FIELDS = ("IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientBirthTime", "PatientSex")
STUDY_FIELDS = (
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "ModalitiesInStudy",
)
SERIES_FIELDS = ("Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime")
INSTANCE_FIELDS = ("SOPClassUID", "InstanceNumber")


def attributes(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(names, odd_values))


def record(uids: st.SearchStrategy[Any], ids: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"PatientID": ids, "StudyInstanceUID": uids, "SeriesInstanceUID": uids, "SOPInstanceUID": uids},
        optional=dict.fromkeys(PATIENT_FIELDS + STUDY_FIELDS + SERIES_FIELDS + INSTANCE_FIELDS, odd_values),
    )


@st.composite
def clean_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Well-formed identity (the rest may still be garbage): UIDs unique by construction, studies belong to one
    patient. Attributes are drawn per level, as a PACS holds them."""
    out = []
    root = "1.2.826.0.1.3680043.10"
    for p in range(draw(st.integers(0, 3))):
        patient = draw(attributes(PATIENT_FIELDS)) | {
            "PatientID": draw(st.text("ABCXYZ0123-", min_size=1, max_size=12)),
            "IssuerOfPatientID": draw(st.one_of(st.none(), st.sampled_from(["HOSP-A", "HOSP-B"]))),
        }
        for s in range(draw(st.integers(1, 2))):
            study = draw(attributes(STUDY_FIELDS)) | {"StudyInstanceUID": f"{root}.{p}.{s}"}
            for e in range(draw(st.integers(1, 2))):
                series = draw(attributes(SERIES_FIELDS)) | {"SeriesInstanceUID": f"{root}.{p}.{s}.{e}"}
                for n in range(draw(st.integers(1, 3))):
                    instance = draw(attributes(INSTANCE_FIELDS)) | {"SOPInstanceUID": f"{root}.{p}.{s}.{e}.{n}"}
                    out.append(patient | study | series | instance)
    return out


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    clean=clean_records(),
    noise=st.lists(record(noise_uid, st.one_of(anything, st.none())), max_size=4),
    order=st.randoms(),
)
def test_any_pacs_answer_gives_a_valid_manifest_with_every_instance_once(
    clean: list[dict[str, Any]], noise: list[dict[str, Any]], order: Any
) -> None:
    rows = clean + noise + noise[:2]  # duplicates too
    order.shuffle(rows)
    builder = StudyTreeBuilder()
    builder.add_instances(rows)
    archive = mf.ArchiveQuery(
        arc_id="pacs",
        base_url="https://pacs.example/wado",
        studies=builder.studies(),
        http_tags=[("Authorization", "Bearer a.b.c")],
    )
    xml = mf.manifest_xml([archive], "uid")
    assert validate(xml) == []
    [view] = read_manifest(xml)
    placed = Counter(i.sop_uid for i in view.instances)
    assert all(n == 1 for n in placed.values()), "an instance appears twice"
    # Every record is either in the manifest or reported as left out.
    assert len(view.instances) + sum(builder.skipped.values()) == len(rows)
    # Every clean instance is there, under its own patient, study and series.
    where = {i.sop_uid: (i.patient_id, i.issuer, i.study_uid, i.series_uid) for i in view.instances}
    for r in clean:
        assert where[r["SOPInstanceUID"]] == (
            r["PatientID"],
            r["IssuerOfPatientID"],
            r["StudyInstanceUID"],
            r["SeriesInstanceUID"],
        )


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    clean=clean_records(),
    noise=st.lists(record(noise_uid, st.one_of(anything, st.none())), max_size=4),
    archives=st.integers(1, 3),
    data=st.data(),
)
def test_the_summary_of_a_built_manifest_is_what_its_document_lists(
    clean: list[dict[str, Any]], noise: list[dict[str, Any]], archives: int, data: st.DataObject
) -> None:
    """The audit event and the patient-context check read a built manifest from its trees (summarize_archives),
    never parsing it again: exactly what a parse of the document finds, in the same order, for any PACS answer
    spread over several archives (a study may be in two)."""
    rows = clean + noise
    queries = []
    for n in range(archives):
        builder = StudyTreeBuilder()
        builder.add_instances(data.draw(st.lists(st.sampled_from(rows), max_size=len(rows))) if rows else [])
        queries.append(mf.ArchiveQuery(arc_id=f"pacs-{n}", base_url="https://pacs.example", studies=builder.studies()))
    body = mf.manifest_gzip(queries, "uid")
    assert summarize_archives(queries) == summarize_manifest(body)


# --- query strings: mostly valid requests, whose parsed criteria must be exactly what was generated -------------

# Identifier text (PatientID, AccessionNumber, IssuerOfPatientID): letters of any script, digits, punctuation
# (DICOM wildcards and commas included) and inner spaces; never a backslash, a control character or `^`.
identifier_chars = st.characters(categories=("L", "N", "Pd", "Po", "Zs"), exclude_characters="\\^")


def identifier_text(max_size: int, extra_excluded: str = "") -> st.SearchStrategy[str]:
    chars = st.characters(categories=("L", "N", "Pd", "Po", "Zs"), exclude_characters="\\^" + extra_excluded)
    return st.text(chars, min_size=1, max_size=max_size).filter(
        lambda s: s == s.strip(" ") and s.replace("*", "").replace("?", "").strip() != ""
    )


dicom_uid = st.from_regex(r"[1-9][0-9]{0,5}(\.(0|[1-9][0-9]{0,5})){1,6}", fullmatch=True)
MODALITIES = ["CT", "MR", "PT", "US", "CR", "DX", "MG", "SEG", "OT", "RTSTRUCT"]
OFFSETS = [None, dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))]


@st.composite
def patients(draw: st.DrawFn) -> tuple[str, PatientIdentifier]:
    """A patientID parameter value and what it names: `ID`, `ID^^^Issuer`, or the HL7 CX authority forms."""
    pid = draw(identifier_text(64))
    issuer = draw(st.none() | identifier_text(64, extra_excluded="&*?"))
    if issuer is None:
        return pid, PatientIdentifier(pid)
    form = draw(st.sampled_from(["{pid}^^^{issuer}", "{pid}^^^{issuer}&1.2.3&ISO", "{pid}^^^{issuer}^PI"]))
    if form.endswith("&ISO") and draw(st.booleans()):  # no namespace: the universal id names the issuer
        uid = draw(dicom_uid)
        return f"{pid}^^^&{uid}&ISO", PatientIdentifier(pid, uid)
    return form.format(pid=pid, issuer=issuer), PatientIdentifier(pid, issuer)


@st.composite
def uid_parameters(draw: st.DrawFn, name: str, uids: list[str]) -> list[tuple[str, str]]:
    """UIDs as repeated parameters or comma lists (spaces around commas allowed), in their order."""
    groups: list[list[str]] = []
    for uid in uids:
        if not groups or draw(st.booleans()):
            groups.append([])
        groups[-1].append(uid)
    return [(name, draw(st.sampled_from([",", ", ", " , "])).join(g)) for g in groups]


def bound(value: dt.date | dt.datetime, *, end_of_day: bool) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)  # PACS times have no zone: the offset is dropped, not applied
    return dt.datetime.combine(value, dt.time.max if end_of_day else dt.time.min)


date_bounds = st.one_of(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)),
    st.builds(
        lambda d, tz: d.replace(tzinfo=tz),
        st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 12, 31)),
        st.sampled_from(OFFSETS),
    ),
)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[list[tuple[str, str]], QueryCriteria]:
    """Parameters for every key and filter (in any interleaving, values of one key in order) and the criteria
    they stand for."""
    pairs: list[tuple[str, str]] = []
    named = draw(st.lists(patients(), max_size=3, unique_by=lambda p: p[0]))
    pairs += [("patientID", raw) for raw, _ in named]
    uids: dict[str, list[str]] = {}
    for name in ("studyUID", "seriesUID", "objectUID"):
        uids[name] = draw(st.lists(dicom_uid, max_size=4, unique=True))
        pairs += draw(uid_parameters(name, uids[name]))
    accessions = draw(st.lists(identifier_text(16), max_size=3, unique=True))
    pairs += [("accessionNumber", a) for a in accessions]
    if not (named or accessions or any(uids.values())):
        uids["studyUID"] = [draw(dicom_uid)]  # a request needs at least one key
        pairs.append(("studyUID", uids["studyUID"][0]))
    archives = draw(
        st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True), max_size=3, unique=True)
    )
    pairs += [("archive", a) for a in archives]
    modalities = draw(st.lists(st.lists(st.sampled_from(MODALITIES), min_size=1, max_size=3), max_size=2))
    pairs += [("modalitiesInStudy", ",".join(draw(st.sampled_from([m, m.lower()])) for m in ms)) for ms in modalities]
    terms = draw(st.lists(st.text(st.characters(categories=("L", "N", "Zs")), max_size=12), max_size=3))
    if terms:
        pairs.append(("containsInDescription", ",".join(terms)))
    lower = draw(st.none() | date_bounds)
    upper = draw(st.none() | date_bounds)
    pairs += [(name, v.isoformat()) for name, v in (("lowerDateTime", lower), ("upperDateTime", upper)) if v]
    most_recent = draw(st.none() | st.integers(1, 1000))
    if most_recent is not None:
        pairs.append(("mostRecentResults", draw(st.sampled_from(["{}", " {} ", "0{}"])).format(most_recent)))
    order = draw(st.permutations([name for name, _ in pairs]))
    queues: dict[str, list[str]] = {}
    for name, value in pairs:
        queues.setdefault(name, []).append(value)
    interleaved = [(name, queues[name].pop(0)) for name in order]
    folded = (fold_text(t.strip()) for t in terms)
    expected = QueryCriteria(
        patients=tuple(p for _, p in named),
        study_uids=tuple(uids["studyUID"]),
        accession_numbers=tuple(accessions),
        series_uids=tuple(uids["seriesUID"]),
        object_uids=tuple(uids["objectUID"]),
        archives=tuple(archives),
        modalities=frozenset(m for ms in modalities for m in ms),
        description_terms=tuple(dict.fromkeys(t for t in folded if t)),
        lower_date_time=bound(lower, end_of_day=True) if lower else None,
        upper_date_time=bound(upper, end_of_day=False) if upper else None,
        most_recent_results=most_recent,
    )
    return interleaved, expected


def encode(pairs: list[tuple[str, str]], plus: bool) -> str:
    """Form-encoding as a browser (`+` for spaces) or a client library (`%20`) writes it."""
    quoting = quote_plus if plus else quote
    return "&".join(f"{k}={quoting(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in pairs)


@settings(max_examples=REQUEST_EXAMPLES)
@given(valid_requests(), st.booleans())
def test_a_valid_query_string_parses_to_exactly_its_criteria(
    request: tuple[list[tuple[str, str]], QueryCriteria], plus: bool
) -> None:
    pairs, expected = request
    assert criteria_from_query_string(encode(pairs, plus)) == expected


# One invalid value per parameter family, each refused with a 400 naming its parameter.
INVALID_VALUES = [
    ("patientID", "***"),
    ("patientID", "P\\1"),
    ("patientID", "P" * 65),
    ("patientID", "P1^^^ISS*"),
    ("studyUID", "1.2.x"),
    ("seriesUID", "1..2"),
    ("objectUID", "1.2,,1.3"),
    ("accessionNumber", "A" * 17),
    ("archive", "-pacs"),
    ("modalitiesInStudy", "C-T"),
    ("containsInDescription", "x" * 65),
    ("lowerDateTime", "2024-13-01"),
    ("upperDateTime", "yesterday"),
    ("mostRecentResults", "0"),
    ("mostRecentResults", "1001"),
]


@settings(max_examples=REQUEST_EXAMPLES)
@given(valid_requests(), st.sampled_from(INVALID_VALUES), st.integers(0, 40), st.booleans())
def test_an_invalid_value_among_valid_ones_is_a_400_naming_its_parameter(
    request: tuple[list[tuple[str, str]], QueryCriteria], invalid: tuple[str, str], at: int, plus: bool
) -> None:
    pairs, _ = request
    pairs.insert(at % (len(pairs) + 1), invalid)
    with pytest.raises(InvalidRequest) as refused:
        criteria_from_query_string(encode(pairs, plus))
    assert any(p.field.startswith(invalid[0]) for p in refused.value.problems), refused.value.problems


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "patientID",
                    "studyUID",
                    "accessionNumber",
                    "seriesUID",
                    "objectUID",
                    "modalitiesInStudy",
                    "containsInDescription",
                    "lowerDateTime",
                    "upperDateTime",
                    "mostRecentResults",
                    "archive",
                    "other",
                ]
            ),
            anything,
        ),
        max_size=6,
    )
)
def test_any_query_string_is_criteria_or_a_clear_400(pairs: list[tuple[str, str]]) -> None:
    """Arbitrary text (mostly refused): never anything but criteria or a 400 that names each problem."""
    raw = encode(pairs, plus=False)
    refusal: InvalidRequest | None = None
    try:
        criteria_from_query_string(raw)
    except InvalidRequest as exc:  # any other exception would be a 500
        refusal = exc
    if refusal is not None:
        assert refusal.detail
        assert all(p.field and p.message for p in refusal.problems)


# --- launch URIs: what the Weasis launcher reads back is exactly the manifest URL and options asked for --------

url_text = st.text(st.sampled_from(string.ascii_letters + string.digits + "-._~:/?#[]@!&()*+,;=%"), max_size=300)
# Option values: any printable text but what the launcher would split or unquote on ($ " ' \).
option_text = (
    st.text(st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="$\"'\\"), min_size=1, max_size=40)
    .map(str.strip)
    .filter(bool)
)
property_key = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True).filter(
    lambda k: (
        k.lower() not in PROTECTED_PROPERTIES
        and not k.lower().startswith(PROTECTED_PREFIXES)
        and k not in PATH_CHECKED_PROPERTIES
    )
)
codebase = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}(:[0-9]{1,5})?", fullmatch=True),
    st.text(st.sampled_from(string.ascii_letters + string.digits + "-._~/?#@!&()*+,;=%"), max_size=60).map(
        lambda p: "/" + p
    ),
)


@st.composite
def launch_requests(draw: st.DrawFn) -> tuple[list[tuple[str, str]], LaunchOptions]:
    cdb = draw(st.none() | codebase)
    properties = draw(st.lists(st.tuples(property_key, option_text), max_size=3))
    args = draw(st.lists(option_text, max_size=3))
    pairs = ([("cdb", cdb)] if cdb else []) + [("pro", f"{k} {v}") for k, v in properties] + [("arg", a) for a in args]
    return pairs, LaunchOptions(cdb=cdb, properties=tuple(properties), args=tuple(args))


@settings(max_examples=REQUEST_EXAMPLES)
@given(url_text, launch_requests())
def test_a_launch_uri_gives_the_launcher_exactly_the_url_and_options_asked_for(
    url: str, request: tuple[list[tuple[str, str]], LaunchOptions]
) -> None:
    pairs, expected = request
    options = launch_options_from_pairs(pairs)
    assert options == expected
    commands = parse_launch_uri(weasis_uri("https://x/" + url, options))
    assert commands.pop("dicom:get") == [["-w", "https://x/" + url]]
    config = (
        ([f"cdb={expected.cdb}"] if expected.cdb else [])
        + [f"pro={k} {v}" for k, v in expected.properties]
        + [f"arg={a}" for a in expected.args]
    )
    assert commands == ({"weasis:config": [config]} if config else {})


@given(url_text, st.sampled_from("$\"'\\ \x00\n\x7f"), st.integers(0, 300))
def test_a_manifest_url_with_a_character_the_launcher_splits_on_is_refused(url: str, bad: str, at: int) -> None:
    with pytest.raises(ValueError, match="cannot contain"):
        weasis_uri("https://x/" + url[:at] + bad + url[at:])


@settings(max_examples=REQUEST_EXAMPLES)
@given(launch_requests(), st.sampled_from(["cdb", "pro", "arg"]), st.sampled_from("$\"'\\\x00\n\x7f"))
def test_a_launch_option_with_a_character_the_launcher_splits_on_is_refused(
    request: tuple[list[tuple[str, str]], LaunchOptions], name: str, bad: str
) -> None:
    pairs, _ = request
    value = {"cdb": "https://viewer.example/weasis", "pro": "weasis.aet X", "arg": "dicom:close"}[name]
    pairs.append((name, value + bad))
    with pytest.raises(InvalidRequest) as refused:
        launch_options_from_pairs(pairs)
    assert [p.field for p in refused.value.problems] == [name]


@given(anything)
def test_any_url_is_either_refused_or_survives(url: str) -> None:
    try:
        uri = weasis_uri("https://x/" + url)
    except ValueError:
        return
    assert manifest_url_of(uri) == "https://x/" + url


def test_the_v472_schema_accepts_what_the_reference_accepts() -> None:
    builder = StudyTreeBuilder()
    builder.add_instance(
        {"PatientID": "P", "StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3", "SOPInstanceUID": "1.2.3.4"}
    )
    xml = mf.manifest_xml([mf.ArchiveQuery(arc_id="a", base_url="https://a/w", studies=builder.studies())], "u")
    assert validate(xml) == [] and validate(xml, XSD_472) == []


def lxml_instances(instances: list[Instance], prefix: str | None) -> bytes:
    """The `<Instance>` elements as lxml writes them inside a manifest (the default namespace declared above)."""
    buffer = io.BytesIO()
    with (
        etree.xmlfile(buffer, encoding="UTF-8") as xf,
        xf.element(f"{{{mf.NAMESPACE}}}manifest", nsmap={None: mf.NAMESPACE}),
        xf.element(f"{{{mf.NAMESPACE}}}Series"),
    ):
        xf.write("|")  # marks where the instances start
        mf.write_instances(xf, instances, prefix)
    written = buffer.getvalue()
    return written[written.index(b"|") + 1 : written.rindex(b"</Series>")]


verbatim_text = st.text(string.ascii_letters + string.digits + "./-", max_size=70)
instance_value = st.one_of(dicom_uid, verbatim_text, anything)


@settings(max_examples=REQUEST_EXAMPLES)
@given(
    instances=st.lists(
        st.builds(
            Instance,
            instance_value,
            st.one_of(st.none(), instance_value),
            st.one_of(st.none(), st.integers(-(2**31), 2**63)),
        ),
        max_size=6,
    ),
    prefix=st.one_of(st.none(), verbatim_text, anything),
)
def test_instances_written_without_lxml_are_exactly_what_lxml_writes(
    instances: list[Instance], prefix: str | None
) -> None:
    markup = mf.instances_markup(instances, prefix)
    values = [prefix or "", *(i.sop_instance_uid for i in instances), *(i.sop_class_uid or "" for i in instances)]
    verbatim = all(re.fullmatch(r"[0-9A-Za-z./-]*", v) for v in values)
    if not verbatim:
        assert markup is None  # lxml writes these: it escapes, or refuses what XML cannot hold
        return
    assert markup == lxml_instances(instances, prefix)
