"""This process's peak memory, as the benchmarks and bulk throughput records report it."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's own peak resident set (``VmHWM``), in MB.

    Not ``ru_maxrss``: Linux keeps that maximum across fork and exec, so a process started
    with multiprocessing's ``spawn`` reports at least its parent's RSS at the fork (a
    benchmark child of a parent holding a 600-slice phantom "peaked" at the parent's size).
    ``ru_maxrss`` is the fallback where ``/proc`` is missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
