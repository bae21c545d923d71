"""Progress, cooperative cancel and timings of one analysis run (`JobContext`), and the failure a person can act on."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bridgex.cancel import check_cancel

from services.analyzer.config import AnalyzerSettings
from services.common.jobs import JobStore

log = logging.getLogger(__name__)


SHUTDOWN = threading.Event()
"""Set when this process's Celery worker starts to shut down (SIGTERM, SIGINT, SIGQUIT: `worker_shutting_down`,
connected in services.analyzer.tasks). A running job then stops at its next check, as a cancel would, and is
handed back to the queue instead of being cancelled (`JobContext.handing_back`)."""


class AnalysisFailed(Exception):
    """A failure a person can act on (bad data, too few probes, worker down); the message says what to do."""


# Overall percent per stage: (start, end). Profiles dominate on CPU. The probe set comes first: it is cheap
# and the likeliest to fail (small dictionary, gold filter), so a doomed job fails before the costly profiles.
WEIGHTS = {
    "data": (0, 5),
    "model": (5, 8),
    "probes": (8, 25),
    "profile": (25, 60),
    "activations": (60, 78),
    "rank": (78, 82),
    "validate": (82, 98),
    "publish": (98, 100),
}


@dataclass
class JobContext:
    """Progress and cooperative cancel for one run; also usable without a job (scripts): job_id=None."""

    settings: AnalyzerSettings
    job_id: str | None = None
    store: JobStore | None = None
    request_id: str | None = None
    force: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    on_progress: Callable[[str, int, int, float], None] | None = None
    _last_check: float = 0.0
    _last_report: float = 0.0
    _cancelled: bool = False
    handing_back: bool = False
    """The process is shutting down (SHUTDOWN): the job stopped to be handed back, not cancelled."""

    def should_cancel(self) -> bool:
        """Checked between batches and layers; reads the Redis flag at most every 0.2 s. A job also stops when
        its process shuts down (SHUTDOWN; with `handing_back` set)."""
        if self._cancelled or self.handing_back:
            return True
        if self.store is None or self.job_id is None:
            return False
        if SHUTDOWN.is_set():
            self.handing_back = True
            return True
        now = time.monotonic()
        if now - self._last_check < 0.2:
            return False
        self._last_check = now
        try:
            self._cancelled = bool(self.store.cancel_requested(self.job_id))
        except Exception as e:  # Redis blip: keep working, read the flag again next time
            log.warning("job %s: cannot read the cancel flag: %s", self.job_id, e)
        return self._cancelled

    def check(self, where: str) -> None:
        check_cancel(self.should_cancel, f"cancelled during {where}")

    def progress(
        self, stage: str, current: int, total: int, *, sub: tuple[int, int] | None = None, force: bool = False
    ) -> None:
        """Stage progress; `sub` = (index, count) spreads a stage over several items (languages)."""
        lo, hi = WEIGHTS.get(stage, (0, 100))
        frac = (current / total) if total else 0.0
        if sub is not None:
            frac = (sub[0] + frac) / max(1, sub[1])
        pct = lo + (hi - lo) * min(1.0, frac)
        if self.on_progress is not None:
            self.on_progress(stage, current, total, pct)
        now = time.monotonic()
        if self.store is None or self.job_id is None or (not force and now - self._last_report < 0.25):
            return
        self._last_report = now
        try:
            self.store.progress(self.job_id, stage, current, total, percent=pct)
        except Exception as e:  # progress is advisory: a Redis blip must not kill an hour of profiling
            log.warning("job %s: cannot record progress: %s", self.job_id, e)

    def timed(self, name: str) -> _Timer:
        return _Timer(self, name)


class _Timer:
    def __init__(self, ctx: JobContext, name: str) -> None:
        self.ctx, self.name = ctx, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.ctx.timings[self.name] = self.ctx.timings.get(self.name, 0.0) + time.perf_counter() - self.t0
