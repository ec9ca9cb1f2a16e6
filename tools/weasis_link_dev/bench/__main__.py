"""Run the benchmarks and print one table. `python -m weasis_link_dev.bench [--quick] [name ...]`."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from weasis_link_dev.bench import BenchContext, Figure

# Module name -> what it measures; each module's run(ctx) returns its figures.
BENCHES = {
    "cold_start": "cold start of the API function",
    "warm_request": "warm GET /manifests on the embedded archive (excluding the S3 PUT)",
    "manifest_build": "100,000-instance manifest build",
    "qido": "DICOM_WEB on Orthanc: handler vs raw QIDO-RS GET, requests, memory",
    "cleanup": "cleanup at scale",
    "load": "load test over two archives",
    "launch": "launch latency, 10- vs 5,000-instance study (DICOMweb on Orthanc)",
    "cfind": "DICOM C-FIND on Orthanc, 5,000-instance study: connector vs findscu and the Java strategy",
    "sql": "DB on dcm4chee-arc-light's schema (PostgreSQL, MariaDB), 5,000-instance manifest: handler vs bare query",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"subset of: {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller sizes")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHES)
    ctx = BenchContext(quick=args.quick)
    figures: list[Figure] = []
    failed = []
    try:
        for name in names:
            started = time.perf_counter()
            print(f"… {name}: {BENCHES.get(name, name)}", file=sys.stderr, flush=True)
            try:
                module = importlib.import_module(f"weasis_link_dev.bench.{name}")
                figures.extend(module.run(ctx))
            except Exception:
                traceback.print_exc()
                failed.append(name)
            print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    finally:
        ctx.close()
    print_table(figures)
    if failed:
        print(f"\nbenchmarks that could not run: {', '.join(failed)}")
    return 1 if failed else 0


def print_table(figures: list[Figure]) -> None:
    rows = [("Figure", "Value", "Goal", "Met", "How")]
    for f in figures:
        met = "-" if f.ok is None else ("yes" if f.ok else "NO")
        rows.append((f.name, f.cell(), f.goal or "-", met, f.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(widths[j]) for j, c in enumerate(r[:4])) + "  " + r[4])
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 3)


if __name__ == "__main__":
    sys.exit(main())
