"""Cross-archive duplicates: an instance found in several archives is listed once.

Two archives often hold the same studies (a VNA and a PACS; DICOMweb and C-FIND to one PACS). Listing an instance in
both arcQueries doubles the download, doubles the counts and makes Weasis skip the series it sees under a second
baseUrl. So each SOPInstanceUID is kept in the first archive, in the configured order (`connector.default`, then
the rest of `connector.config`), that has it; a series or study left empty disappears from the later archive. The
answer's counts are distinct (`distinct_counts`), and a warning names the archives that overlapped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from weasis_link.study_tree import Study


@dataclass(frozen=True, slots=True)
class Deduplicated:
    studies: dict[str, list[Study]]  # archive id -> what it lists
    emptied: frozenset[str]  # archives whose every instance was already listed by an earlier one
    warnings: list[str] = field(default_factory=list)


def deduplicate(answers: Sequence[tuple[str, list[Study]]], order: Sequence[str]) -> Deduplicated:
    """Keep each SOPInstanceUID in the first archive of `order` that has it (archives not in `order` come last)."""
    if len(answers) == 1:  # nothing to compare with: an archive's own repeats were refused by its study tree
        archive_id, studies = answers[0]
        return Deduplicated({archive_id: studies}, frozenset())
    rank = {a: i for i, a in enumerate(order)}
    ranked = sorted(answers, key=lambda a: rank.get(a[0], len(rank)))
    seen: dict[str, str] = {}  # SOPInstanceUID -> archive that lists it
    overlaps: dict[str, set[str]] = {}  # kept-in archive -> later archives that also had its instances
    removed = 0
    kept: dict[str, list[Study]] = {}
    emptied: set[str] = set()
    for archive_id, studies in ranked:
        out: list[Study] = []
        for study in studies:
            series = {}
            changed = False
            for uid, s in study.series.items():
                instances = []
                for instance in s.instances:
                    first = seen.setdefault(instance.sop_instance_uid, archive_id)
                    if first == archive_id:
                        instances.append(instance)
                    else:
                        removed += 1
                        overlaps.setdefault(first, set()).add(archive_id)
                if len(instances) == len(s.instances):
                    series[uid] = s
                else:
                    changed = True
                    if instances:
                        series[uid] = dataclasses.replace(s, instances=instances)
            if series:
                out.append(dataclasses.replace(study, series=series) if changed else study)
        kept[archive_id] = out
        if studies and not out:
            emptied.add(archive_id)
    warnings = []
    if removed:
        pairs = "; ".join(f"{first} and {', '.join(sorted(later))}" for first, later in overlaps.items())
        warnings.append(
            f"The same images were found in several archives ({pairs}): {removed} duplicate instance(s) are listed "
            "once, from the first archive in the configured order."
        )
    return Deduplicated({a: kept[a] for a, _ in answers}, frozenset(emptied), warnings)


def distinct_counts(study_lists: Iterable[Sequence[Study]]) -> tuple[int, int, int, int]:
    """(patients, studies, series, instances), each counted once across archives."""
    patients, studies, series = set(), set(), set()
    instances = 0
    for study_list in study_lists:
        for study in study_list:
            patients.add(study.patient.key)
            studies.add(study.study_instance_uid)
            for uid, s in study.series.items():
                series.add(uid)
                instances += len(s.instances)
    return len(patients), len(studies), len(series), instances
