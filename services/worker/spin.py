"""How long vLLM's processes busy-wait for each other before they sleep: a vLLM general plugin.

Why: on the CPU build the engine core and the model-runner process hand every step over a shared-memory queue
whose reader spins (`sched_yield`) for a whole second after its last message before it sleeps on a
notification (vLLM's `SpinCondition`, `busy_loop_s`=1, not configurable). On a 2-core machine that keeps both
cores busy for a second after every request: the model's own threads, the gateway, Redis and the analyzer all
wait for a CPU that a spinning reader holds. A short spin (BRIDGEX_WORKER_SPIN_S; the launcher sets 0.002 s on
CPU) lets a reader sleep as soon as the other side is computing. Measured in docs/results.md (run 13): the
default model's requests/s at 1/8/16 clients 1.03x/1.05x/1.14x, the gateway's own time 4.74 -> 3.26 ms p50.

vLLM loads every `vllm.general_plugins` entry point in each of its processes (API server, engine core, model
runner) before its queues exist; `register` patches the default there and does nothing without the variable,
so vLLM run for anything else (the analyzer's capture backend) keeps vLLM's own behaviour.
"""

from __future__ import annotations

import logging
import os

SPIN_ENV = "BRIDGEX_WORKER_SPIN_S"
log = logging.getLogger("bridgex.worker")


def spin_seconds(env: dict[str, str] | os._Environ[str] = os.environ) -> float | None:
    """The busy-wait the environment asks for (seconds >= 0), None when it asks for none or is unreadable."""
    raw = (env.get(SPIN_ENV) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a number of seconds", SPIN_ENV, raw)
        return None
    return value if value >= 0 else None


def register() -> None:
    """vLLM general plugin: readers of vLLM's shared-memory queues spin for `spin_seconds()` (idempotent)."""
    seconds = spin_seconds()
    if seconds is None:
        return
    from vllm.distributed.device_communicators import shm_broadcast

    cond = shm_broadcast.SpinCondition
    if getattr(cond, "_bridgex_spin", None) == seconds:
        return
    original = getattr(cond, "_bridgex_original_init", cond.__init__)

    def __init__(self, is_reader, context, notify_address, busy_loop_s: float = seconds) -> None:
        original(self, is_reader, context, notify_address, busy_loop_s=seconds)

    cond._bridgex_original_init = original
    cond.__init__ = __init__
    cond._bridgex_spin = seconds
