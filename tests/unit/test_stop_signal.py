"""`make run` stops on SIGTERM/SIGINT even when signals land while the main thread is waiting (StopSignal)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

CHILD = r"""
import os, signal, sys, threading
from weasis_link_dev.local_stack import StopSignal
stop = StopSignal()
if sys.argv[1] == "early":
    os.kill(os.getpid(), signal.SIGTERM)  # before wait(): it must still count
# Other threads running meanwhile, as in the stack (servers, the audit printer).
threading.Thread(target=threading.Event().wait, daemon=True).start()
print("waiting", flush=True)
print(stop.wait(), flush=True)
os._exit(0)  # the rest of the burst may still be arriving: the interpreter's exit restores default handlers
"""


def _child(mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_burst_of_stop_signals_ends_the_wait(signum: int) -> None:
    # The old Event-based handler deadlocked when a second signal (make forwards SIGTERM to its child) landed inside
    # the first handler or inside Event.wait: this burst is that case.
    child = _child("late")
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "waiting"
    for _ in range(50):
        child.send_signal(signum)
    out, err = child.communicate(timeout=60)  # a hang guard, not a timing
    assert child.returncode == 0, err
    assert out.split() == [str(int(signum))]


def test_a_signal_before_the_wait_counts() -> None:
    child = _child("early")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.split() == ["waiting", str(int(signal.SIGTERM))]
