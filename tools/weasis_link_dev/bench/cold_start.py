"""Cold start of what `sam build` ships: a fresh `python -S` process on `.aws-sam/build` (built or reused), against
`python -c "import boto3; boto3.client('s3')"` measured the same way, alternating, in the same run.

The bundle: the function's directory (/var/task), the layer's `python/` directory (/opt/python) and boto3 with its
dependencies as the runtime provides them (copied from the development virtualenv), in Lambda's order on PYTHONPATH.
This machine may not be arm64: the layer's native distributions are swapped for this machine's wheels of the same
versions (from the virtualenv), everything else is the built artefact file for file, `.pyc` included.

Each process reports, on a pipe, monotonic timestamps and its own CPU time (getrusage) at two marks, then leaves
with os._exit (Lambda never pays interpreter shutdown):
- Init: spawn until the handler module is imported (the baseline: until its S3 client exists);
- first request: the handler's first invocation (GET /manifests, token validated against a local JWKS);
- time to first response: both together.
Every process runs with PYTHONDONTWRITEBYTECODE (Lambda's /var/task and /opt are read-only) and counts, with an audit
hook on `compile`, the source files it compiled: a cold start must compile none. Instruction counts come from one
run of each under `valgrind --tool=callgrind` (stable on a noisy machine).

Also measured, the same way: the libraries' floor, a process doing with the project's libraries the least the first
response needs (the JWKS fetched and the token checked with PyJWT, one pydantic model, the Powertools resolver
validating the request, one QIDO-RS GET, lxml writing the gzipped manifest, PutObject beside PutEvents, a presigned
URL), with the function's own init measures. Its ratio to the baseline is what no code of ours can go below; the
DICOMweb-only function ÷ that floor is what our configuration, checks, audit and code add.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from weasis_link_dev.bench import BenchContext, Figure
from weasis_link_dev.dev_keys import REPO_ROOT, JwksServer, SigningKey, access_token_claims
from weasis_link_dev.local_stack import create_audit_bus, create_bucket, moto_s3, service_environment

BUILD = REPO_ROOT / ".aws-sam" / "build"
STAMP = BUILD / ".bench-sources.sha256"
SOURCES = ("template.yaml", "layers/shared", "functions", "tools/check-iac")
EVENT = REPO_ROOT / "events" / "get_manifests_by_study.json"
# What the Lambda Python 3.12 runtime has on sys.path besides the standard library.
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
# Loaded by the first request only if something imports more than the configuration needs.
AUDIT_OFF = "embedded archive, audit off"
FLOOR = (
    "the libraries' floor (a token checked with PyJWT, a pydantic model, the Powertools resolver validating one"
    " request, one QIDO GET, lxml writing the gzipped manifest, PutObject beside PutEvents, a presigned URL)"
)
HEAVY = ("numpy", "PIL", "pydicom", "pynetdicom", "pg8000", "pymysql", "sqlalchemy")

CHILD = r"""
import os, sys, time, resource
def _mark():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter_ns(), usage.ru_utime + usage.ru_stime
compiled = []
def _audit(event, args):
    # importlib compiles a module's source only when no usable .pyc exists
    if event == "compile" and isinstance(args[1], str) and args[1].endswith(".py"):
        compiled.append(args[1])
sys.addaudithook(_audit)
import json  # the runtime's bootstrap has it before importing the handler
if os.environ["BENCH_MODE"] == "baseline":
    import boto3
    boto3.client("s3")
    init = first = _mark()
    status = 0
elif os.environ["BENCH_MODE"] == "floor":
    # The least a first response needs from the project's libraries, written plainly: no configuration, no checks
    # beyond the token's, with the function's own init measures (collector paused, the same deferred imports).
    import gc
    gc.disable()
    import weasis_link.lazy_imports
    import gzip, io, threading
    import boto3, jwt, urllib3
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from lxml import etree
    from pydantic import BaseModel
    class Archive(BaseModel):
        url: str
    archive = Archive(url=os.environ["BENCH_QIDO"])
    s3, http = boto3.client("s3"), urllib3.PoolManager()
    events = boto3.client("events", endpoint_url=os.environ["AWS_ENDPOINT_URL_EVENTS"])  # the function's own variable
    keys = jwt.PyJWKSet.from_dict(json.loads(http.request("GET", os.environ["OAUTH_JWKS_URL"]).data))
    logger, metrics = Logger(), Metrics()
    app = APIGatewayHttpResolver(enable_validation=True)
    bucket = os.environ["MANIFEST_BUCKET"]
    @app.get("/manifests")
    def manifests(studyUID: str) -> dict:
        token = app.current_event.headers["authorization"].split()[1]
        key = keys[jwt.get_unverified_header(token)["kid"]].key
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=os.environ["OAUTH_AUDIENCES"])
        rows = json.loads(http.request("GET", f"{archive.url}/studies/{studyUID}/instances").data)
        body = io.BytesIO()
        with gzip.GzipFile(fileobj=body, mode="wb", compresslevel=1, mtime=0) as gz, etree.xmlfile(gz) as xf:
            with xf.element("manifest", {"uid": claims["sub"]}):
                for row in rows:
                    with xf.element("Instance", {"SOPInstanceUID": row["00080018"]["Value"][0]}):
                        pass
        entry = {"EventBusName": os.environ["AUDIT_EVENT_BUS"], "Source": "weasis-link.audit", "DetailType": "floor",
                 "Detail": json.dumps({"instances": len(rows)})}
        sent = []
        audit = threading.Thread(target=lambda: sent.append(events.put_events(Entries=[entry])))
        audit.start()
        s3.put_object(Bucket=bucket, Key="bench-floor", Body=body.getvalue())
        audit.join()
        if not sent or sent[0]["FailedEntryCount"]:
            raise RuntimeError("the audit event was not sent")
        return {"url": s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "bench-floor"})}
    gc.freeze()
    gc.enable()
    init = _mark()
    with open(os.environ["BENCH_EVENT"]) as f:
        event = json.load(f)
    event["headers"]["authorization"] = "Bearer " + os.environ["BENCH_TOKEN"]
    status = app.resolve(event, None)["statusCode"]
    first = _mark()
else:
    with open(os.environ["BENCH_EVENT"]) as f:
        event = json.load(f)
    event["headers"]["authorization"] = "Bearer " + os.environ["BENCH_TOKEN"]
    import importlib
    handler = importlib.import_module("app").lambda_handler
    init = _mark()
    class Context:
        function_name = "bench"; memory_limit_in_mb = 1024; aws_request_id = "bench"
        invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
        def get_remaining_time_in_millis(self): return 29000
    status = handler(event, Context())["statusCode"]
    first = _mark()
heavy = sorted(m for m in os.environ["BENCH_HEAVY"].split(",") if m in sys.modules)
result = {"init": init, "first": first, "status": status, "compiled": compiled, "heavy": heavy}
os.write(int(os.environ["BENCH_FD"]), json.dumps(result).encode())
os._exit(0)
"""


@dataclass
class Sample:
    init_ms: float  # spawn -> handler imported
    first_ms: float  # the first invocation
    total_ms: float  # spawn -> first response
    init_cpu_ms: float  # process CPU (all threads) until the handler is imported
    cpu_ms: float  # process CPU (all threads) until the first response
    compiled: list[str]
    heavy: list[str]


@dataclass
class Case:
    label: str
    short: str
    goal: float | None
    env: dict[str, str]
    pythonpath: list[Path]
    samples: list[Sample] = field(default_factory=list)
    instructions: int = 0


# --- the built bundle ---------------------------------------------------------------------------------------


def source_digest() -> str:
    digest = hashlib.sha256()
    for top in SOURCES:
        path = REPO_ROOT / top
        files = sorted(p for p in (path.rglob("*") if path.is_dir() else [path]) if p.is_file())
        for file in files:
            if "__pycache__" in file.parts:
                continue
            digest.update(str(file.relative_to(REPO_ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def built_bundle() -> Path:
    """.aws-sam/build, rebuilt with tools/sam-build when the sources changed since the bench last built it."""
    digest = source_digest()
    if not (STAMP.is_file() and STAMP.read_text() == digest):
        print("  sam build (tools/sam-build) …", file=sys.stderr, flush=True)
        subprocess.run([str(REPO_ROOT / "tools" / "sam-build")], check=True, cwd=REPO_ROOT)
        STAMP.write_text(digest)
    return BUILD


def _is_native(dist: importlib.metadata.Distribution) -> bool:
    wheel = dist.read_text("WHEEL") or ""
    return "Root-Is-Purelib: false" in wheel


def _copy_distribution(name: str, version: str | None, target: Path) -> None:
    """The files of the virtualenv's distribution `name` (its RECORD), bytecode left out."""
    dist = importlib.metadata.distribution(name)
    if version is not None and dist.version != version:
        raise RuntimeError(f"{name}: the layer has {version}, the virtualenv {dist.version} (run `make venv`)")
    for entry in dist.files or ():
        if "__pycache__" in entry.parts or entry.parts[0] == ".." or entry.suffix == ".pyc":
            continue
        destination = target / entry
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(entry.locate(), destination)


def runnable_bundle(build: Path, work: Path) -> tuple[Path, Path, Path, list[str]]:
    """(function dir, layer dir, runtime dir, swapped distributions): the built artefact, its native distributions
    swapped for this machine's wheels of the same versions, and the runtime's boto3."""
    function = build / "ApiFunction"
    layer = work / "opt-python"
    shutil.copytree(build / "SharedLayer" / "python", layer, symlinks=True)
    swapped = []
    for dist in importlib.metadata.distributions(path=[str(layer)]):
        if not _is_native(dist):
            continue
        name, version = dist.metadata["Name"], dist.version
        for entry in dist.files or ():
            (layer / entry).unlink(missing_ok=True)
        _copy_distribution(name, version, layer)
        swapped.append(f"{name} {version}")
    runtime = work / "runtime"
    for name in RUNTIME_DISTRIBUTIONS:
        _copy_distribution(name, None, runtime)
    compile_all = [sys.executable, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash"]
    subprocess.run([*compile_all, str(layer), str(runtime)], check=True, capture_output=True)
    return function, layer, runtime, sorted(swapped)


# --- measuring ----------------------------------------------------------------------------------------------


def _python() -> str:
    """The interpreter itself, not the virtualenv's (with -S the two see the same sys.path)."""
    return getattr(sys, "_base_executable", sys.executable)


def spawn(case: Case, cwd: Path, wrapper: list[str] | None = None) -> tuple[Sample, str]:
    read_fd, write_fd = os.pipe()
    env = case.env | {
        "BENCH_FD": str(write_fd),
        "BENCH_HEAVY": ",".join(HEAVY),
        "PYTHONPATH": os.pathsep.join(map(str, case.pythonpath)),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    started = time.perf_counter_ns()
    process = subprocess.Popen(
        [*(wrapper or []), _python(), "-S", "-c", CHILD],
        env=env,
        cwd=cwd,
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        raw = pipe.read()
    _, stderr = process.communicate()
    if process.returncode != 0 or not raw:
        raise RuntimeError(f"{case.label}: the process failed ({process.returncode}):\n{stderr[-3000:]}")
    result = json.loads(raw)
    if result["status"] not in (0, 200):
        raise RuntimeError(f"{case.label}: first response {result['status']}:\n{stderr[-3000:]}")
    (init_ns, init_cpu), (first_ns, first_cpu) = result["init"], result["first"]
    sample = Sample(
        init_ms=(init_ns - started) / 1e6,
        first_ms=(first_ns - init_ns) / 1e6,
        total_ms=(first_ns - started) / 1e6,
        init_cpu_ms=init_cpu * 1000,
        cpu_ms=first_cpu * 1000,
        compiled=result["compiled"],
        heavy=result["heavy"],
    )
    return sample, stderr


def instructions(case: Case, cwd: Path) -> int:
    """Instructions executed until the first response (os._exit skips shutdown), all threads, under callgrind."""
    wrapper = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    _, stderr = spawn(case, cwd, wrapper)
    found = re.findall(r"Collected\s*:\s*(\d+)", stderr)
    if not found:
        raise RuntimeError(f"{case.label}: callgrind printed no instruction count:\n{stderr[-2000:]}")
    return int(found[-1])


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ms ({min(values):.0f}–{max(values):.0f})"


def run(ctx: BenchContext) -> list[Figure]:
    from weasis_link_dev.orthanc import OrthancServer
    from weasis_link_dev.synthetic_studies import standard_dataset

    build = built_bundle()
    work = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    ctx.on_close(lambda: shutil.rmtree(work, ignore_errors=True))
    function, layer, runtime, swapped = runnable_bundle(build, work)
    key = SigningKey.generate("bench")
    jwks = JwksServer([key]).start()
    ctx.on_close(jwks.stop)
    repeat = 5 if ctx.quick else 11
    records = standard_dataset()
    with moto_s3() as endpoint, OrthancServer(datasets=[records]) as pacs:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "AWS_", "BENCH_"))}
        env |= service_environment(jwks.url, endpoint, {"POWERTOOLS_LOG_LEVEL": "WARNING"})
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")})
        create_bucket(endpoint)
        create_audit_bus(endpoint)  # a deployed function audits its first request too
        env |= {"BENCH_TOKEN": key.sign(access_token_claims()), "LAMBDA_TASK_ROOT": str(function)}
        dicomweb = work / "dicomweb.yaml"
        dicomweb.write_text(_bundled(_DICOMWEB_YAML.format(wado=pacs.wado_url, qido=pacs.dicomweb_url)))
        lambda_path = [function, layer, runtime]
        baseline = Case("bare boto3", "baseline", None, env | {"BENCH_MODE": "baseline"}, [runtime])
        dicomweb_event = str(_event_for(work, records[0].study_instance_uid))
        floor = Case(
            FLOOR,
            "floor",
            None,
            env | {"BENCH_MODE": "floor", "BENCH_QIDO": pacs.dicomweb_url, "BENCH_EVENT": dicomweb_event},
            [layer, runtime],
        )
        cases = [
            baseline,
            floor,
            Case(
                "DICOMweb-only configuration on Orthanc (production's shape)",
                "DICOMweb-only",
                1.5,
                env
                | {
                    "BENCH_MODE": "handler",
                    "WEASIS_LINK_CONFIG": str(dicomweb),
                    "BENCH_EVENT": dicomweb_event,
                },
                lambda_path,
            ),
            Case(
                "embedded SQLite archive (make run's default)",
                "embedded archive",
                1.8,
                env | {"BENCH_MODE": "handler", "BENCH_EVENT": str(EVENT)},
                lambda_path,
            ),
            # The same without an audit bus: the audit trail's share of the cold start, measured in the same run.
            Case(
                "embedded SQLite archive, audit trail off",
                AUDIT_OFF,
                1.8,
                env | {"BENCH_MODE": "handler", "BENCH_EVENT": str(EVENT), "AUDIT_EVENT_BUS": ""},
                lambda_path,
            ),
        ]
        for case in cases:  # one unmeasured run each: the file cache warm for all alike
            spawn(case, function)
        for _ in range(repeat):  # alternating, so machine noise hits every case alike
            for case in cases:
                case.samples.append(spawn(case, function)[0])
        if shutil.which("valgrind"):
            for case in cases:
                case.instructions = instructions(case, function)
    return _figures(baseline, cases[2:], repeat, swapped) + _floor_figures(baseline, floor, cases[2])


def _figures(baseline: Case, cases: list[Case], repeat: int, swapped: list[str]) -> list[Figure]:
    def median(case: Case, metric: Callable[[Sample], float]) -> float:
        return statistics.median(metric(s) for s in case.samples)

    base_total = median(baseline, lambda s: s.total_ms)
    base_cpu = median(baseline, lambda s: s.cpu_ms)
    figures = [
        Figure(
            "Cold start baseline: python -S -c \"import boto3; boto3.client('s3')\"",
            base_total,
            "ms",
            detail=f"wall {_spread([s.total_ms for s in baseline.samples])},"
            f" CPU {_spread([s.cpu_ms for s in baseline.samples])}, {baseline.instructions / 1e6:.0f} M instructions;"
            f" median of {repeat} alternating runs, exit excluded",
        )
    ]
    for case in cases:
        total = median(case, lambda s: s.total_ms)
        init = median(case, lambda s: s.init_ms)
        cpu = median(case, lambda s: s.cpu_ms)
        assert case.goal is not None
        figures.append(
            Figure(
                f"Cold start, {case.label}: time to first response / baseline",
                total / base_total,
                "x",
                f"≤ {case.goal}",
                total / base_total <= case.goal,
                f"wall {_spread([s.total_ms for s in case.samples])} vs {base_total:.0f} ms: Init (spawn → handler"
                f" imported) {_spread([s.init_ms for s in case.samples])} = {init / base_total:.2f}x, first request"
                f" {_spread([s.first_ms for s in case.samples])}; median of {repeat} alternating runs, exit excluded",
            )
        )
        figures.append(
            Figure(
                f"Cold start, {case.short}: CPU time to first response / baseline",
                cpu / base_cpu,
                "x",
                detail=f"process CPU (getrusage, all threads) {_spread([s.cpu_ms for s in case.samples])}"
                f" vs {base_cpu:.0f} ms; Init {_spread([s.init_cpu_ms for s in case.samples])}",
            )
        )
        if case.instructions and baseline.instructions:
            figures.append(
                Figure(
                    f"Cold start, {case.short}: instructions to first response / baseline (callgrind)",
                    case.instructions / baseline.instructions,
                    "x",
                    detail=f"{case.instructions / 1e6:.0f} M vs {baseline.instructions / 1e6:.0f} M instructions,"
                    " one run each under valgrind --tool=callgrind",
                )
            )
        compiled = max(len(s.compiled) for s in case.samples)
        example = next((s.compiled[0] for s in case.samples if s.compiled), "")
        heavy = case.samples[-1].heavy
        figures.append(
            Figure(
                f"Cold start, {case.short}: source files compiled at cold start",
                compiled,
                "",
                "0",
                compiled == 0,
                (f"e.g. {example}; " if example else "audit hook on compile(), PYTHONDONTWRITEBYTECODE=1; ")
                + f"heavy modules loaded: {', '.join(heavy) or 'none'}; native wheels swapped for this machine:"
                f" {', '.join(swapped) or 'none'}",
            )
        )
    figures += _audit_share(cases)
    return figures


def _floor_figures(baseline: Case, floor: Case, dicomweb: Case) -> list[Figure]:
    """What the project's libraries cost at the least, against the baseline, and the DICOMweb-only function against
    that floor: the part of its cold start that is the project's own code and configuration."""

    def total(case: Case) -> float:
        return statistics.median(s.total_ms for s in case.samples)

    def cpu(case: Case) -> float:
        return statistics.median(s.cpu_ms for s in case.samples)

    instructions = ""
    if floor.instructions and baseline.instructions and dicomweb.instructions:
        instructions = (
            f"; instructions {floor.instructions / baseline.instructions:.2f}x ({floor.instructions / 1e6:.0f} M),"
            f" DICOMweb-only ÷ floor {dicomweb.instructions / floor.instructions:.2f}x"
        )
    return [
        Figure(
            f"Cold start, {FLOOR}: time to first response / baseline",
            total(floor) / total(baseline),
            "x",
            detail=f"wall {_spread([s.total_ms for s in floor.samples])}, CPU {cpu(floor) / cpu(baseline):.2f}x"
            f" ({cpu(floor):.0f} ms){instructions}; the same Orthanc, moto and token as the DICOMweb-only case",
        ),
        Figure(
            "Cold start, DICOMweb-only ÷ the libraries' floor: time to first response",
            total(dicomweb) / total(floor),
            "x",
            detail=f"wall {total(dicomweb):.0f} vs {total(floor):.0f} ms, CPU {cpu(dicomweb) / cpu(floor):.2f}x: what"
            " the configuration, the checks, the audit and the code around them add",
        ),
    ]


def _audit_share(cases: list[Case]) -> list[Figure]:
    """Time to first response with the audit trail on (a bus on moto: the events client and one PutEvents) against
    the same case without it, in the same run: wall clock, CPU and instructions."""
    on = next((c for c in cases if c.short == "embedded archive"), None)
    off = next((c for c in cases if c.short == AUDIT_OFF), None)
    if on is None or off is None:
        return []
    wall_on, wall_off = (statistics.median(s.total_ms for s in c.samples) for c in (on, off))
    cpu_on, cpu_off = (statistics.median(s.cpu_ms for s in c.samples) for c in (on, off))
    first_on, first_off = (statistics.median(s.first_ms for s in c.samples) for c in (on, off))
    instr = ""
    if on.instructions and off.instructions:
        instr = f"; instructions {on.instructions / off.instructions:.3f}x ({on.instructions / 1e6:.0f} M vs" + (
            f" {off.instructions / 1e6:.0f} M)"
        )
    return [
        Figure(
            "Cold start, embedded archive: audit trail's share of time to first response",
            round((wall_on - wall_off) / wall_on * 100, 1),
            "%",
            detail=f"wall {wall_on:.0f} vs {wall_off:.0f} ms audit on/off ({wall_on / wall_off:.3f}x), first request"
            f" {first_on:.0f} vs {first_off:.0f} ms; CPU {cpu_on / cpu_off:.3f}x ({cpu_on:.0f} vs {cpu_off:.0f} ms)"
            + instr,
        )
    ]


# Written the way an integrator writes it, and bundled the way `sam build` bundles it (tools/check-iac).
_DICOMWEB_YAML = """\
# One DICOMweb archive (production's shape)
wado:
  url: {wado}
connector:
  config:
    pacs:
      type: DICOM_WEB
      dicom-web-connector:
        url: {qido}
"""


def _bundled(text: str) -> str:
    from weasis_link_dev.bundled_config import as_json

    converted, why = as_json(text)
    if converted is None:
        raise RuntimeError(f"the DICOMweb configuration would stay YAML in the bundle: {why}")
    return converted


def _event_for(directory: Path, study_uid: str) -> Path:
    event = json.loads(EVENT.read_text())
    event["rawQueryString"] = f"studyUID={study_uid}"
    event["queryStringParameters"] = {"studyUID": study_uid}
    path = directory / "event.json"
    path.write_text(json.dumps(event))
    return path
