"""k-shot demonstrations for translate prompts (bridgex.demos); a pair's missing data is asked of the analyzer.

The gateway never gathers data itself: gathering may install packages (FreeDict through apt-get) and holds
the data directory's lock for minutes. A request whose demonstrations lack their data marks the gathering
`queued` in Redis (`redis_keys.data_gather`, SET NX, so one request per key asks) and sends the analyzer's
`bridgex.gather_data` task. Then:
- the *default* k_shot answers at once, zero-shot, with a warning that says the data is on its way;
- an explicit `k_shot` waits at most `data_wait_s` (polling the files, never a lock, never a thread held) and
  then is a 503 with Retry-After, or a 424 when the analyzer reported that the data cannot be had.
With BRIDGEX_DATA_AUTO off nothing is asked for: an explicit k_shot is a 422 that says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from bridgex import demos as lib
from bridgex.data.ensure import missing_data
from bridgex.prompts import Demo

from services.common import redis_keys

from ..core.errors import ApiError
from ..deps import AppContext

log = logging.getLogger("bridgex.api")

GATHER_QUEUED_TTL_S = 900
"""A `queued` mark lives this long: with no analyzer consuming the queue, a later miss asks again."""
POLL_S = 0.5


WARM_MAX = 65536
_warm: set[tuple[str, str, str, str, str | None]] = set()
"""(data dir, task, source, target, bridge) whose demonstrations were picked once: their data is cached."""


class DemoDataMissing(Exception):
    """The demonstrations' data is not (yet) in the data directory; the message says why."""

    def __init__(self, message: str, *, failed: bool = False) -> None:
        super().__init__(message)
        self.failed = failed


def _names(langs: list[str], pairs: list[tuple[str, str]]) -> str:
    return ", ".join([f"{s}-{t}" for s, t in pairs] + langs)


async def request_gathering(ctx: AppContext, pairs: list[tuple[str, str]], languages: list[str]) -> dict | None:
    """Ask the analyzer once for the data of `pairs` / `languages` (those still missing). Returns the
    gathering's recorded state (None when nothing is missing). Raises DemoDataMissing when the broker or
    Redis cannot take the request."""
    root = ctx.settings.data_path
    langs, missing = await asyncio.to_thread(missing_data, root, pairs, languages)
    if not langs and not missing:
        return None
    key = redis_keys.data_gather(str(root), missing, langs)
    state = {"state": "queued", "at": time.time(), "pairs": [list(p) for p in missing], "languages": langs}
    try:
        fresh = await ctx.redis.set(key, json.dumps(state), nx=True, ex=GATHER_QUEUED_TTL_S)
        if not fresh:
            raw = await ctx.redis.get(key)
            return json.loads(raw) if raw else state
        try:
            await asyncio.to_thread(
                ctx.celery.send_task,
                "bridgex.gather_data",
                kwargs={"pairs": [list(p) for p in missing], "languages": langs},
                queue=ctx.settings.analyze_queue,
            )
        except Exception:
            await ctx.redis.delete(key)
            raise
    except Exception as exc:  # Redis or the broker is down
        raise DemoDataMissing(
            f"the data for {_names(langs, missing)} is missing and could not be asked for ({exc})"
        ) from exc
    log.info("asked the analyzer for the data of %s", _names(langs, missing))
    return state


async def ensure(ctx: AppContext, pairs: list[tuple[str, str]], languages: list[str], wait_s: float) -> None:
    """Ask for the data of `pairs` / `languages` and wait at most `wait_s` for it (0: do not wait). Raises
    DemoDataMissing (its `failed` set when the analyzer reported the data cannot be had)."""
    deadline = time.monotonic() + wait_s
    while True:
        state = await request_gathering(ctx, pairs, languages)
        if state is None:
            return
        if state.get("state") == "failed":
            raise DemoDataMissing(f"the data cannot be gathered: {state.get('error')}", failed=True)
        if time.monotonic() >= deadline:
            what = _names(state.get("languages", []), [tuple(p) for p in state.get("pairs", [])])
            raise DemoDataMissing(
                f"the data for {what} is being gathered by the analyzer (first use of the pair, "
                f"{state.get('state')}); retry in a minute"
            )
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


async def demos(
    ctx: AppContext,
    task: str,
    source: str,
    target: str,
    bridge: str | None,
    k: int,
    text: str,
    *,
    explicit: bool,
    words: list[str] | None = None,
    choice: str = "frequent",
) -> tuple[list[Demo], list[Demo], list[str]]:
    """(bridge-step demos, final-step demos, warnings). `words`: the demonstration words an analysis measured
    for the pair (served as measured); None picks the pair's most common ones."""
    if k <= 0:
        return [], [], []
    root = str(ctx.settings.data_path)

    def pick() -> tuple[list[Demo], list[Demo]]:
        if task == "word":
            return lib.word_demos(root, source, target, bridge, k, text, words=words, choice=choice)
        return lib.text_demos(root, source, target, bridge, k)

    warm = (root, task, source, target, bridge)
    try:
        # the first pick of a pair reads its dictionary (off the event loop); later ones are cached lookups of
        # a few microseconds, cheaper inline than a thread hop
        step1, step2 = pick() if warm in _warm else await asyncio.to_thread(pick)
        if len(_warm) < WARM_MAX:
            _warm.add(warm)
    except FileNotFoundError as missing:
        if not ctx.settings.data_auto:
            if explicit:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"k_shot={k} needs demonstration data: {missing} (BRIDGEX_DATA_AUTO is off, so it is "
                    "not gathered here). Or send k_shot=0.",
                    details={"field": "k_shot"},
                ) from missing
            return [], [], [f"zero-shot: the default k_shot={k} needs demonstration data ({missing})"]
        bridges = (bridge,) if bridge else ()
        pairs = lib.demo_pairs(source, target, bridges) if task == "word" else []
        try:
            await ensure(ctx, pairs, [source, target, *bridges], ctx.settings.data_wait_s if explicit else 0.0)
            step1, step2 = await asyncio.to_thread(pick)
        except (DemoDataMissing, FileNotFoundError) as exc:
            if explicit:
                failed = isinstance(exc, DemoDataMissing) and exc.failed
                raise ApiError(
                    424 if failed else 503,
                    "demo_data_unavailable",
                    f"k_shot={k} needs demonstration data: {exc}. Or send k_shot=0.",
                    headers={} if failed else {"Retry-After": "30"},
                ) from exc
            return [], [], [f"zero-shot: the default k_shot={k} needs demonstration data ({exc})"]
    short = min(len(step2), len(step1) if bridge else len(step2))
    warnings = [f"only {short} of k_shot={k} demonstrations available"] if short < k else []
    return step1, step2, warnings
