"""Cross-archive duplicates (weasis_link/archives/duplicates.py): each SOPInstanceUID once, in the first configured archive."""

from __future__ import annotations

from weasis_link.archives.duplicates import deduplicate, distinct_counts
from weasis_link.study_tree import Instance, Patient, PatientKey, Series, Study


def study(uid: str, sops: dict[str, list[str]], pid: str = "P1") -> Study:
    series = {se: Series(se, instances=[Instance(s) for s in insts]) for se, insts in sops.items()}
    return Study(uid, Patient(PatientKey(pid, "HOSP")), series=series)


def sop_uids(studies: list[Study]) -> list[str]:
    return [i.sop_instance_uid for s in studies for se in s.series.values() for i in se.instances]


def test_the_same_study_in_two_archives_is_listed_once_by_the_first_in_order() -> None:
    vna = [study("1", {"1.1": ["1.1.1", "1.1.2"], "1.2": ["1.2.1"]})]
    pacs = [study("1", {"1.1": ["1.1.1", "1.1.2"], "1.2": ["1.2.1"]})]
    result = deduplicate([("vna", vna), ("pacs", pacs)], ["pacs", "vna"])
    assert sop_uids(result.studies["pacs"]) == ["1.1.1", "1.1.2", "1.2.1"]
    assert result.studies["vna"] == []
    assert result.emptied == {"vna"}
    [warning] = result.warnings
    assert "pacs and vna" in warning and "3 duplicate" in warning
    assert distinct_counts(result.studies.values()) == (1, 1, 2, 3)
    assert distinct_counts([vna, pacs]) == (1, 1, 2, 6)  # before: every instance twice


def test_different_content_keeps_each_instance_once() -> None:
    a = [study("1", {"1.1": ["1", "2", "3"]})]
    b = [study("1", {"1.1": ["2", "3", "4"], "1.2": ["5"]}), study("2", {"2.1": ["6"]})]
    result = deduplicate([("a", a), ("b", b)], ["a", "b"])
    assert sop_uids(result.studies["a"]) == ["1", "2", "3"]
    assert sop_uids(result.studies["b"]) == ["4", "5", "6"]
    assert result.emptied == frozenset()
    every = sop_uids(result.studies["a"]) + sop_uids(result.studies["b"])
    assert sorted(every) == sorted(set(every)) and len(every) == 6
    assert distinct_counts(result.studies.values()) == (1, 2, 3, 6)
    assert sop_uids(b) == ["2", "3", "4", "5", "6"]  # the connector's own answer is not changed


def test_no_overlap_no_warning_and_unknown_archives_come_last() -> None:
    result = deduplicate([("x", [study("9", {"9.1": ["9"]})]), ("a", [study("1", {"1.1": ["1"]})])], ["a"])
    assert result.warnings == [] and result.emptied == frozenset()
    assert list(result.studies) == ["x", "a"]  # the answer keeps the archives' order


def test_one_archive_is_kept_as_it_is() -> None:
    """One archive answered: its studies as they are (what the general path gives, next to an empty archive)."""
    studies = [study("1", {"1.1": ["1", "2"], "1.2": ["3"]}), study("2", {"2.1": ["4"]})]
    result = deduplicate([("a", studies)], ["a"])
    general = deduplicate([("a", studies), ("b", [])], ["a", "b"])
    assert result.studies == {"a": studies}
    assert result.studies["a"] == general.studies["a"]
    assert result.emptied == general.emptied == frozenset()
    assert result.warnings == general.warnings == []
