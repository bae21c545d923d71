"""k-shot demonstrations for translate prompts (bridgex.demos), gathering the pair's data on first need.

Missing data is gathered in the background by the same `bridgex.data.ensure.ensure_data` the analyzer's data
stage runs (one inter-process lock per data directory, so the two never prepare at once). A request waits up
to `settings.data_wait_s` for it. Still missing after that: an explicit `k_shot` is a 503 with Retry-After
(the data is on its way, or it says why it cannot be had); the *default* k_shot degrades to zero-shot and says
so in a warning, so `auto` keeps answering on a fresh machine. With BRIDGEX_DATA_AUTO off nothing is gathered:
an explicit k_shot is a 422 that says so.
"""

from __future__ import annotations

import asyncio
import logging

from bridgex import demos as lib
from bridgex.data.ensure import ensure_data, missing_data
from bridgex.data.prepare import PrepareConfig
from bridgex.prompts import Demo

from ..core.errors import ApiError
from ..deps import AppContext

log = logging.getLogger("bridgex.api")

_inflight: dict[tuple[str, tuple[tuple[str, str], ...]], asyncio.Future[None]] = {}


class DemoDataMissing(Exception):
    """The demonstrations' data is not (yet) in the data directory; the message says why."""


def _gather(root: str, pairs: tuple[tuple[str, str], ...], languages: tuple[str, ...]) -> None:
    ensure_data(PrepareConfig(data_dir=root), list(pairs), list(languages), log=log.info)
    lib.clear_cache()


async def ensure(ctx: AppContext, pairs: list[tuple[str, str]], languages: list[str] = ()) -> None:
    """Wait (at most data_wait_s) for the data of `pairs` / `languages`, starting its gathering once per
    process. Raises DemoDataMissing when it is not there in time or cannot be gathered."""
    root = str(ctx.settings.data_path)
    langs, missing = await asyncio.to_thread(missing_data, ctx.settings.data_path, pairs, languages)
    if not langs and not missing:
        return
    key = (root, tuple(sorted(set(pairs))))
    fut = _inflight.get(key)
    if fut is None:
        fut = asyncio.ensure_future(asyncio.to_thread(_gather, root, key[1], tuple(languages)))
        _inflight[key] = fut
        fut.add_done_callback(lambda _f: _inflight.pop(key, None))
    try:
        await asyncio.wait_for(asyncio.shield(fut), ctx.settings.data_wait_s)
    except TimeoutError as exc:
        names = ", ".join(f"{s}-{t}" for s, t in missing) or ", ".join(langs)
        raise DemoDataMissing(
            f"the data for {names} is being gathered (first use of the pair); retry in a minute"
        ) from exc
    except Exception as exc:
        raise DemoDataMissing(f"the demonstration data could not be gathered: {exc}") from exc


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

    try:
        step1, step2 = await asyncio.to_thread(pick)
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
        try:
            bridges = (bridge,) if bridge else ()
            await ensure(
                ctx, lib.demo_pairs(source, target, bridges) if task == "word" else [], [source, target, *bridges]
            )
            step1, step2 = await asyncio.to_thread(pick)
        except (DemoDataMissing, FileNotFoundError) as exc:
            if explicit:
                raise ApiError(
                    503,
                    "demo_data_unavailable",
                    f"k_shot={k} needs demonstration data: {exc}. Or send k_shot=0.",
                    headers={"Retry-After": "30"},
                ) from exc
            return [], [], [f"zero-shot: the default k_shot={k} needs demonstration data ({exc})"]
    short = min(len(step2), len(step1) if bridge else len(step2))
    warnings = [f"only {short} of k_shot={k} demonstrations available"] if short < k else []
    return step1, step2, warnings
