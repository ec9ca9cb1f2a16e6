"""Check a connector configuration file and probe every archive it names: `make check-config CONFIG=FILE`, or on a
deployed configuration `python -m weasis_link.check_config FILE` (the Lambda layer's package, nothing else needed).

The file is validated as at cold start (`${VAR}` interpolation from the environment, secret references resolved).
Then each archive is probed, one at a time, each bounded by `--timeout`:

- DB: connect and run the configured select with `LIMIT 1` (its columns checked as the connector does);
- DICOM: C-ECHO, then a bounded C-FIND (a StudyInstanceUID that cannot exist, through the connector itself);
- DICOM_WEB: a bounded QIDO-RS (the same unmatchable StudyInstanceUID, through the connector and its
  authentication; an archive that takes the caller's token needs `--token`).

One line per archive: reachable or not, the exact reason, the time taken. Secrets are never printed: reasons are
the connectors' own messages (no password, no token, no bound value). Exit status: 0 when every archive answered,
1 when any did not, 2 when the file itself is invalid.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from weasis_link import config as cfg
from weasis_link.errors import ArchiveError, WeasisLinkError

__all__ = ["ProbeResult", "main", "probe_archive"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    archive_id: str
    type: str
    ok: bool
    reason: str
    seconds: float

    def line(self) -> str:
        state = "reachable" if self.ok else "NOT REACHABLE"
        return f"{self.archive_id} ({self.type}): {state} in {self.seconds:.3f} s: {self.reason}"


def _unmatchable_uid() -> str:
    # A fresh UUID-derived UID (2.25.<uuid>): no archive holds it, so the C-FIND / QIDO answer is empty and cheap.
    return f"2.25.{uuid.uuid4().int}"


def probe_archive(
    archive_id: str, connector: cfg.ConnectorConfig, seconds: float, token: str | None = None
) -> ProbeResult:
    """Probe one configured archive; never raises for an archive's failure."""
    started = time.perf_counter()
    try:
        reason = _probe(archive_id, connector, seconds, token)
        ok = True
    except WeasisLinkError as exc:
        reason, ok = exc.detail, False
    except Exception as exc:  # a probe must report, not crash, whatever the archive does
        reason, ok = f"unexpected error ({type(exc).__name__})", False
    return ProbeResult(archive_id, connector.type, ok, reason, time.perf_counter() - started)


def _probe(archive_id: str, connector: cfg.ConnectorConfig, seconds: float, token: str | None) -> str:
    # Connector modules import their drivers (SQLAlchemy, pynetdicom, urllib3): only the ones this file uses.
    if connector.type == "DB":
        from weasis_link.connectors import database_connector

        assert connector.db_connector is not None
        rows = database_connector(archive_id, connector.db_connector).probe(seconds)
        return f"the configured select answered ({rows} row with LIMIT 1)" if rows else "the select answered no row"
    from weasis_link.connectors import QueryContext, create_connector
    from weasis_link.criteria import QueryCriteria
    from weasis_link.study_tree import StudyTreeBuilder

    echo = ""
    if connector.type == "DICOM":
        assert connector.dicom_connector is not None
        echo = _c_echo(archive_id, connector.dicom_connector, seconds) + "; "
    criteria = QueryCriteria(study_uids=(_unmatchable_uid(),))
    context = QueryContext(token, time.monotonic() + seconds)
    create_connector(archive_id, connector).find(criteria, context, StudyTreeBuilder())
    what = "C-FIND" if connector.type == "DICOM" else "QIDO-RS"
    return f"{echo}a bounded {what} was answered"


def _c_echo(archive_id: str, settings: cfg.DicomConnectorConfig, seconds: float) -> str:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    from weasis_link.connectors.dicom import _tls_args, rejection_text  # the connector's own TLS context

    tls = _tls_args(archive_id, settings)
    ae = AE(ae_title=settings.calling_aet)
    ae.add_requested_context(Verification)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = seconds
    assoc = ae.associate(settings.host, settings.port, ae_title=settings.aet, tls_args=tls)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise ArchiveError(f"C-ECHO: the archive rejected the association ({rejection_text(assoc)})", "unavailable")
        raise ArchiveError("C-ECHO: the archive cannot be reached (no association)", "unavailable")
    try:
        status = assoc.send_c_echo()
        code = getattr(status, "Status", None)
    finally:
        assoc.release()
    if code != 0:
        raise ArchiveError(f"C-ECHO answered status {code if code is None else f'0x{code:04X}'}")
    return "C-ECHO answered"


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m weasis_link.check_config",
        description="Validate a weasis-link connector configuration and probe every archive it names.",
    )
    parser.add_argument(
        "config",
        nargs="?",
        type=Path,
        default=os.environ.get("WEASIS_LINK_CONFIG"),
        help="the YAML file (default: $WEASIS_LINK_CONFIG)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per archive (default 10)")
    parser.add_argument("--archive", action="append", help="probe only this archive (repeatable)")
    parser.add_argument(
        "--token",
        default=os.environ.get("WEASIS_LINK_TOKEN"),
        help="a bearer token for archives that take the caller's (default: $WEASIS_LINK_TOKEN); never printed",
    )
    args = parser.parse_args(argv)
    if args.config is None:
        parser.error("name a configuration file (or set WEASIS_LINK_CONFIG)")
    path = Path(args.config)
    try:
        config = cfg.load_config(path)
    except WeasisLinkError as exc:
        print(f"{path}: INVALID: {exc.detail}", file=out)
        return 2
    archives = list(config.connector.config.items())
    if args.archive:
        unknown = sorted(set(args.archive) - set(config.connector.config))
        if unknown:
            print(f"{path}: no archive named {', '.join(unknown)}", file=out)
            return 2
        archives = [(cid, c) for cid, c in archives if cid in args.archive]
    print(f"{path}: valid ({len(config.connector.config)} archive(s))", file=out)
    failed = 0
    for archive_id, connector in archives:
        result = probe_archive(archive_id, connector, args.timeout, args.token)
        print(result.line(), file=out, flush=True)
        failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
