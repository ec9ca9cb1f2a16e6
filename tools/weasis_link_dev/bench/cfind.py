"""DICOM (C-FIND) on Orthanc, a 5,000-instance study: our connector against dcmtk's `findscu`, and against
weasis-pacs-connector's strategy reimplemented.

In one fresh process, interleaved round by round so that machine noise hits all alike (medians reported):
- ours: `DicomConnector.find` for `studyUID=<uid>` into a study tree (a STUDY query, and the study's IMAGE-level
  query that also asks for the series attributes);
- findscu: `TCP_NODELAY=1 findscu -S -k QueryRetrieveLevel=IMAGE -k StudyInstanceUID=<uid>` asking for exactly the
  attributes our IMAGE-level query asks for (`IMAGE_KEYS`), output discarded: the floor of what a C-FIND costs;
- the Java connector's strategy: STUDY, then SERIES for the study, then IMAGE for each series, one after the other
  on one association, with pynetdicom's own `send_c_find` (answers decoded into Datasets), into a study tree;
- a naive client: one IMAGE-level `send_c_find` with pynetdicom's default logging, reading the answers' attributes
  (what "a naive pynetdicom loop" means in the issue).
Orthanc runs with TCP_NODELAY=1 (the test fixture's server).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from weasis_link_dev.bench import BenchContext, Figure

RATIO_GOAL = 2.0

CHILD = r"""
import json, logging, os, subprocess, sys, time
args = json.loads(sys.argv[1])
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from weasis_link import config as cfg
from weasis_link.connectors.base import QueryContext
from weasis_link.connectors.dicom import STUDY_ROOT_FIND, DicomConnector
from weasis_link.connectors.dicom_identifiers import IMAGE_KEYS, SERIES_KEYS, STUDY_KEYS
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.study_tree import StudyTreeBuilder

uid, port, aet, host = args["uid"], args["port"], args["aet"], args["host"]
settings = cfg.DicomConnectorConfig.model_validate(
    {"calling-aet": "WEASIS-LINK", "aet": aet, "host": host, "port": port}
)
connector = DicomConnector("bench", settings)
criteria = criteria_from_query_string("studyUID=" + uid)

def ours():
    builder = StudyTreeBuilder()
    connector.find(criteria, QueryContext(None, time.monotonic() + 60), builder)
    [study] = builder.studies()
    return study.instance_count

findscu_command = ["findscu", "-aet", "FINDSCU", "-aec", aet, "-S", "-k", "QueryRetrieveLevel=IMAGE"]
findscu_command += ["-k", "StudyInstanceUID=" + uid]
for keyword in IMAGE_KEYS:
    if keyword != "StudyInstanceUID":
        findscu_command += ["-k", keyword]
findscu_command += [host, str(port)]

def findscu():
    subprocess.run(findscu_command, env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)

ae = AE(ae_title="JAVA-STRATEGY")
ae.add_requested_context(STUDY_ROOT_FIND)

def identifier(level, keys, **matching):
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in keys:
        setattr(ds, keyword, "")
    for keyword, value in matching.items():
        setattr(ds, keyword, value)
    return ds

def answers(assoc, ds):
    for status, found in assoc.send_c_find(ds, STUDY_ROOT_FIND):
        if status and status.Status in (0xFF00, 0xFF01) and found is not None:
            yield {e.keyword: (str(e.value) if e.value is not None else None) for e in found if e.keyword}

def java_strategy():
    # weasis-pacs-connector: STUDY level, then SERIES per study, then IMAGE per series (one after the other).
    builder = StudyTreeBuilder()
    assoc = ae.associate(host, port, ae_title=aet)
    try:
        for s in list(answers(assoc, identifier("STUDY", STUDY_KEYS, StudyInstanceUID=uid))):
            study = builder.add_study(s)
            for series in list(answers(assoc, identifier("SERIES", SERIES_KEYS, StudyInstanceUID=uid))):
                image_keys = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")
                query = identifier("IMAGE", image_keys, StudyInstanceUID=uid,
                                   SeriesInstanceUID=series["SeriesInstanceUID"])
                for instance in answers(assoc, query):
                    builder.add_instance({**series, **instance}, study)
    finally:
        assoc.release()
    return builder.studies()[0].instance_count

def naive():
    # pynetdicom's defaults: standard event logging, identifiers formatted for the log.
    saved = (_config.LOG_HANDLER_LEVEL, _config.LOG_REQUEST_IDENTIFIERS, _config.LOG_RESPONSE_IDENTIFIERS)
    level = logging.getLogger("pynetdicom").level
    _config.LOG_HANDLER_LEVEL = "standard"
    _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = True
    logging.getLogger("pynetdicom").setLevel(logging.NOTSET)
    try:
        naive_ae = AE(ae_title="NAIVE")
        naive_ae.add_requested_context(STUDY_ROOT_FIND)
        assoc = naive_ae.associate(host, port, ae_title=aet)
        try:
            return sum(1 for _ in answers(assoc, identifier("IMAGE", IMAGE_KEYS[1:], StudyInstanceUID=uid)))
        finally:
            assoc.release()
    finally:
        _config.LOG_HANDLER_LEVEL, _config.LOG_REQUEST_IDENTIFIERS, _config.LOG_RESPONSE_IDENTIFIERS = saved
        logging.getLogger("pynetdicom").setLevel(level)

runs = {"ours": ours, "findscu": findscu, "java": java_strategy, "naive": naive}
assert ours() == java_strategy() == naive() == args["instances"]  # warm up, and check they all see the study
findscu()
seconds = {name: [] for name in runs}
for _ in range(args["repeat"]):
    for name, fn in runs.items():
        started = time.perf_counter()
        fn()
        seconds[name].append(time.perf_counter() - started)
print(json.dumps({"seconds": seconds, "queries": connector.last_request_count}))
"""


def run(ctx: BenchContext) -> list[Figure]:
    from weasis_link_dev.orthanc import OrthancServer
    from weasis_link_dev.synthetic_studies import large_study

    size = 5000
    # The same datasets as the `orthanc_large` test fixture: its cached Orthanc storage is reused.
    datasets = [large_study(n) for n in (1000, size)]
    pacs = OrthancServer(datasets=datasets)
    pacs.start()
    ctx.on_close(pacs.stop)
    args: dict[str, Any] = {
        "uid": datasets[1][0].study_instance_uid,
        "instances": size,
        "host": pacs.dicom_host,
        "port": pacs.dicom_port,
        "aet": pacs.aet,
        "repeat": 3 if ctx.quick else 7,
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, check=False, timeout=1800
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark process failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    median = {name: statistics.median(samples) for name, samples in result["seconds"].items()}
    rounds = len(result["seconds"]["ours"])
    ratio = median["ours"] / median["findscu"]
    speedup = median["java"] / median["ours"]
    return [
        Figure(
            "C-FIND 5,000-instance study: connector ÷ findscu",
            ratio,
            "x",
            f"≤ {RATIO_GOAL:.1f}",
            ratio <= RATIO_GOAL,
            f"median of {rounds} interleaved: ours {median['ours']:.3f} s ({result['queries']} C-FINDs: STUDY + "
            f"IMAGE with series attributes, into the study tree), findscu {median['findscu']:.3f} s "
            "(the same IMAGE-level attributes, TCP_NODELAY=1)",
        ),
        Figure(
            "C-FIND 5,000-instance study: speed-up over the Java strategy",
            speedup,
            "x",
            "",
            None,
            f"weasis-pacs-connector's walk (STUDY, SERIES per study, IMAGE per series, sequential, pynetdicom "
            f"send_c_find) {median['java']:.3f} s ÷ ours {median['ours']:.3f} s",
        ),
        Figure(
            "C-FIND 5,000-instance study: naive pynetdicom loop ÷ findscu",
            median["naive"] / median["findscu"],
            "x",
            "",
            None,
            f"one IMAGE-level send_c_find with pynetdicom's default logging {median['naive']:.3f} s",
        ),
    ]
