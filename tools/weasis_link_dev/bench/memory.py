"""Peak memory of a stretch of code in this process, from the kernel's own accounting (Linux).

`resource.getrusage().ru_maxrss` is no use in a child process: Linux keeps it across fork and execve, so a child of
a large benchmark process starts with its parent's peak. VmHWM belongs to the address space: reset it, run, read."""

from __future__ import annotations

import resource


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak() -> None:
    """Make VmHWM (peak RSS) restart from the current RSS (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
