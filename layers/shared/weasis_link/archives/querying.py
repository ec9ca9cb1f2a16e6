"""Which archives a request queries, and querying them: `archive=` or connector.default, minus the archives that
deactivated a search key the request uses; then every selected connector concurrently, within one deadline, each
answer re-checked against the criteria (`QueryCriteria.restrict`). One archive's failure is an outcome, not an
error: the others are still served."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from weasis_link.archives.patient_identity import (
    archives_for_wildcards,
    needs_result_check,
    wildcard_warnings,
    with_default_issuer,
)
from weasis_link.auth import Caller
from weasis_link.claims_access import check_named_archives, permitted_archives
from weasis_link.config import AppConfig
from weasis_link.connectors import Connector, QueryContext, create_connector
from weasis_link.criteria import KEY_PARAMETERS, QueryCriteria, SearchKey
from weasis_link.errors import ArchiveError, ArchiveFailure, ArchiveForbidden, CriterionDeactivated, UnknownArchive
from weasis_link.study_tree import Study, StudyTreeBuilder

logger = logging.getLogger(__name__)

PARAMETER_BY_KEY: Final = {key: name for name, key in KEY_PARAMETERS.items()}

ConnectorFactory = Callable[[str], Connector]


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    """What one archive gave: its studies, or why it failed, and how long it took."""

    archive_id: str
    studies: list[Study]
    failure: ArchiveFailure | None
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)


class Archives:
    """The configured archives: selection for a request, and concurrent queries (connectors built once, reused)."""

    def __init__(self, config: AppConfig, connector_factory: ConnectorFactory | None = None) -> None:
        self._config = config
        self._connectors: dict[str, Connector] = {}
        self._factory = connector_factory or (lambda cid: create_connector(cid, config.connector.config[cid]))
        for unknown in config.unknown_default_ids:
            logger.warning("connector.default names an unknown connector; ignored", extra={"connector": unknown})

    # --- selection ------------------------------------------------------------------------------------------
    def select(self, criteria: QueryCriteria, caller: Caller | None = None) -> list[str]:
        """`archive=` ids (must exist, and the caller's claims must allow them: claims_access.py) or the
        connector.default archives the caller may use; then drop archives that refuse a key used."""
        configured = self._config.connector.config
        rules = {cid: c.access for cid, c in configured.items()}
        claims = caller.claims if caller is not None else None
        if criteria.archives:
            unknown = [a for a in criteria.archives if a not in configured]
            if unknown:
                raise UnknownArchive(
                    f"Unknown archive: {', '.join(unknown)}. Configured archives: {', '.join(configured)}."
                )
            check_named_archives(criteria.archives, rules, claims)
            selected = list(criteria.archives)
        else:
            selected = permitted_archives(self._config.default_connector_ids, rules, claims)
            if not selected:
                raise ArchiveForbidden("Your token does not allow any of the archives of this service.")
        allowed = [a for a in selected if not self._refused_keys(a, criteria)]
        if not allowed:
            refused = sorted({k for a in selected for k in self._refused_keys(a, criteria)})
            names = ", ".join(PARAMETER_BY_KEY[k] for k in refused)
            raise CriterionDeactivated(f"Searching by {names} is deactivated for the selected archives.")
        return archives_for_wildcards(criteria, allowed, self._config)

    def order(self) -> list[str]:
        """The configured order (connector.default, then the rest of connector.config): who lists a duplicate."""
        first = self._config.default_connector_ids
        return first + [a for a in self._config.connector.config if a not in first]

    def needs_result_check(self, criteria: QueryCriteria, archive_ids: Sequence[str]) -> bool:
        """Whether a patient-identity rule can only be decided once the archives have answered."""
        return needs_result_check(criteria, archive_ids, self._config)

    def deactivation_warnings(self, criteria: QueryCriteria) -> list[str]:
        """Archives left out because they refuse a key the request uses (said in the JSON answer only: a Weasis
        dialog on every launch for a deliberate policy would be noise)."""
        selected = list(criteria.archives) or self._config.default_connector_ids
        warnings = []
        for archive_id in selected:
            refused = self._refused_keys(archive_id, criteria) if archive_id in self._config.connector.config else set()
            if refused:
                names = ", ".join(PARAMETER_BY_KEY[k] for k in sorted(refused))
                warnings.append(
                    f"The archive {archive_id} was not searched: searching by {names} is deactivated there."
                )
        allowed = [a for a in selected if a in self._config.connector.config and not self._refused_keys(a, criteria)]
        return warnings + wildcard_warnings(criteria, allowed, self._config)

    def default_ids(self) -> list[str]:
        return self._config.default_connector_ids

    def _refused_keys(self, archive_id: str, criteria: QueryCriteria) -> set[SearchKey]:
        deactivated = set(self._config.connector.config[archive_id].search_criteria.deactivated)
        return deactivated & set(criteria.search_keys)

    # --- querying -------------------------------------------------------------------------------------------
    def query(self, archive_ids: Sequence[str], criteria: QueryCriteria, context: QueryContext) -> list[ArchiveOutcome]:
        """Every archive's outcome, in `archive_ids` order; one still running at the deadline is a timeout."""
        if len(archive_ids) == 1:
            return [self._query_one(archive_ids[0], criteria, context)]
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(archive_ids), thread_name_prefix="archive")
        started = time.monotonic()
        try:
            futures = {a: pool.submit(self._query_one, a, criteria, context) for a in archive_ids}
            remaining = max(0.0, context.deadline - time.monotonic())
            concurrent.futures.wait(futures.values(), timeout=remaining + 1.0)
            outcomes = []
            for archive_id, future in futures.items():
                if future.done():
                    outcomes.append(future.result())
                else:
                    future.cancel()
                    failure = ArchiveFailure(archive_id, "timeout", "the archive did not answer in time")
                    outcomes.append(ArchiveOutcome(archive_id, [], failure, context.deadline - started))
            return outcomes
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _connector(self, archive_id: str) -> Connector:
        connector = self._connectors.get(archive_id)
        if connector is None:
            connector = self._connectors[archive_id] = self._factory(archive_id)
        return connector

    def _query_one(self, archive_id: str, criteria: QueryCriteria, context: QueryContext) -> ArchiveOutcome:
        started = time.perf_counter()
        builder = StudyTreeBuilder()
        criteria = with_default_issuer(criteria, self._config.connector.config[archive_id].default_issuer)
        try:
            self._connector(archive_id).find(criteria, context, builder)
        except ArchiveError as exc:
            elapsed = time.perf_counter() - started
            logger.warning(
                "archive query failed",
                extra={"archive": archive_id, "kind": exc.kind, "reason": exc.detail, "seconds": round(elapsed, 3)},
            )
            return ArchiveOutcome(archive_id, [], ArchiveFailure(archive_id, exc.kind, exc.detail), elapsed)
        except Exception as exc:  # a connector bug must not hide the other archives' images
            elapsed = time.perf_counter() - started
            logger.exception("archive query crashed", extra={"archive": archive_id})
            failure = ArchiveFailure(archive_id, "bad-response", f"unexpected error ({type(exc).__name__})")
            return ArchiveOutcome(archive_id, [], failure, elapsed)
        studies = criteria.restrict(builder.studies())
        elapsed = time.perf_counter() - started
        logger.info(
            "archive answered",
            extra={
                "archive": archive_id,
                "studies": len(studies),
                "instances": sum(s.instance_count for s in studies),
                "seconds": round(elapsed, 3),
            },
        )
        return ArchiveOutcome(archive_id, studies, None, elapsed, dict(builder.skipped))
