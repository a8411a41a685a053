"""How many CPU threads hvae's own work takes: as many cores as other processes leave free.

PyTorch runs CPU work on one OpenMP thread per core, and OpenMP's threads spin while they wait for
each other. With other processes on the cores, a thread that has lost its core holds the others up
at every barrier, and a command takes many times its share of the machine (benchmarks/RESULTS.md,
"Under load": the demo 11x slower at a load of 5 on 2 cores). So where nobody has said how many
threads (``--threads``, ``OMP_NUM_THREADS``), hvae takes the cores that others leave free, at
least one: measured when a command starts (:func:`choose_for_process`, before PyTorch loads) and
again every few seconds of a training (:class:`CpuShare`, from what the machine did meanwhile).
Linux only (``/proc/stat``); elsewhere PyTorch's default stands. No PyTorch here: the command line
calls this before PyTorch loads.

A training changes its thread count only where that cannot change what it computes
(:func:`hvae.device.products_independent_of_threads`): so the same seed trains the same model on a
busy machine as on an idle one.
"""

from __future__ import annotations

import os
import sys
import time

START_WINDOW_S = 0.05  # how long a command watches the machine before it starts
_chosen: str | None = None  # the OMP_NUM_THREADS that choose_for_process set, if it set one


def _cpu_times() -> tuple[int, int, int] | None:
    """The machine's CPU time, its idle part and this process's own CPU time, in clock ticks (None off Linux)."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        with open("/proc/self/stat") as own:
            fields = own.read().rsplit(")", 1)[1].split()  # after the command's name, which may hold spaces
    except (OSError, ValueError, IndexError):
        return None
    return sum(values), values[3] + values[4], int(fields[11]) + int(fields[12])  # utime + stime


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class CpuShare:
    """Watches how busy other processes keep the machine; :meth:`threads` is what hvae should take."""

    def __init__(self) -> None:
        self.cores = usable_cores()
        self.machine_cores = os.cpu_count() or self.cores
        self._last = _cpu_times()

    def others_busy(self) -> float | None:
        """Cores kept busy by other processes since the last call (or since this was made); None if unknown."""
        now = _cpu_times()
        last, self._last = self._last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        total, idle, own = (a - b for a, b in zip(now, last))
        return max(0.0, (total - idle - own) / total * self.machine_cores)

    def threads(self) -> int:
        """The cores left free by the others since the last look, rounded, at least 1 (all if unknown)."""
        busy = self.others_busy()
        if busy is None:
            return self.cores
        return max(1, min(self.cores, int(self.cores - busy + 0.5)))


def choose_for_process(window: float = START_WINDOW_S) -> int | None:
    """Before PyTorch loads: set ``OMP_NUM_THREADS`` to the cores other processes leave free, where
    that is fewer than all and nobody has set it. The threads chosen, or None where it was not this
    function's to choose (already set, or PyTorch already loaded: it would not read it)."""
    if "OMP_NUM_THREADS" in os.environ or "torch" in sys.modules:
        return None
    share = CpuShare()
    time.sleep(window)
    threads = share.threads()
    if threads < share.cores:
        global _chosen
        os.environ["OMP_NUM_THREADS"] = _chosen = str(threads)
    return threads


def threads_set_by_user() -> bool:
    """Whether ``OMP_NUM_THREADS`` holds somebody's choice rather than :func:`choose_for_process`'s."""
    return "OMP_NUM_THREADS" in os.environ and os.environ["OMP_NUM_THREADS"] != _chosen
