"""CPU priority of a service process (Unix nice).

On a machine that runs the whole stack (`make run`: two cores shared by the gateway, the generation worker and the
analyzer), the gateway's few milliseconds per request wait behind whichever process holds a core. The analyzer's
work (profiling, activations) is batch work: at a lower priority the scheduler hands a core to the gateway as soon
as a request arrives, and the analysis loses little, because the gateway's share of the CPU is small. (The
generation worker stays at the default: niced, it made the gateway's requests to it slower, docs/results.md
run 12.) In a container or a pod the value applies inside its own cgroup, where CPU requests and limits share
the machine between services.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def lower_priority(niceness: int) -> int:
    """Raise this process's niceness to at least `niceness` (0-19) for every thread it has now; threads started
    later inherit it from the thread that starts them. Returns the niceness now in force. Never raises: a
    priority is a hint, and a process that may not change its own keeps running as it is."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return _current()
    target = min(19, niceness)
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]  # Linux: nice is per thread
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError as exc:  # the thread ended, or a policy forbids it
            log.debug("could not renice thread %s: %s", tid, exc)
    return _current()


def _current() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (OSError, AttributeError):
        return 0
