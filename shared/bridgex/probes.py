"""Probe sets (method.md step 2): dictionary pairs -> `word_prompt` -> optional gold filter -> capped set.

The gold filter (DECISION, default on) asks the generation worker (any OpenAI-compatible server, through the
one `GenerationClient`) to translate each source word greedily and keeps a word only when the parsed answer
matches one of its gold targets: the paper's "the model totally understands" probe. The probe set is an
artifact (JSON) with a content hash that goes into the bridge cache key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from bridgex.atomic import atomic_write_text
from bridgex.cancel import Progress, ShouldCancel, check_cancel
from bridgex.frequency import frequency_order
from bridgex.prompts import Demo, normalize_word, parse_word, word_prompt

PROBE_FORMAT = "bridgex-probes/1"


class ProbeSetError(ValueError):
    """The probe set cannot be built; the message says what to change."""


class ProbeSetTooSmall(ProbeSetError):
    pass


class ProbeItem(BaseModel):
    word: str
    gold: list[str]
    prompt: str
    answer: str | None = Field(None, description="Parsed model answer when the gold filter ran.")


class ProbeSet(BaseModel):
    format: str = PROBE_FORMAT
    source: str
    target: str
    items: list[ProbeItem]
    gold_filtered: bool
    filter: Literal["gold", "unfiltered", "off"] = Field(
        "off", description="gold: words the model translated right; unfiltered: the filter kept fewer than "
        "probe_min, so these are the first words unfiltered (probe_fallback); off: no filter asked.")
    examined: int = Field(0, description="Unique source words examined (before the cap / filter).")
    tried: int = Field(0, description="Words sent through the gold filter.")
    kept: int = Field(0, description="Words the gold filter kept (before any fallback).")
    errors: int = Field(0, description="Gold-filter requests that failed (not counted as kept).")
    available: int = Field(0, description="Unique usable source words in the dictionary.")
    params: dict[str, Any] = Field(default_factory=dict)
    hash: str = ""

    @property
    def prompts(self) -> list[str]:
        return [it.prompt for it in self.items]

    @property
    def words(self) -> list[str]:
        return [it.word for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def content_hash(self) -> str:
        return probe_hash(self.source, self.target, self.items)

    def save(self, path: str | Path) -> Path:
        """Atomic write (temp file + rename in the same folder)."""
        return atomic_write_text(Path(path), self.model_dump_json(indent=1))

    @classmethod
    def load(cls, path: str | Path) -> ProbeSet:
        ps = cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
        if ps.hash and ps.hash != ps.content_hash():
            raise ProbeSetError(f"probe set {path} is corrupt: content hash mismatch")
        return ps


def probe_hash(source: str, target: str, items: Iterable[ProbeItem]) -> str:
    """Content hash: pair + words + gold + prompts (what the activations and the ranking depend on)."""
    payload = {"source": source, "target": target,
               "items": [[it.word, sorted(it.gold), it.prompt] for it in items]}
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def candidate_words(
    pairs: Iterable[Any], *, skip_identical: bool = True, seed: int = 0,
    source: str | None = None, target: str | None = None, word_order: str = "frequency",
) -> list[tuple[str, list[str]]]:
    """Unique source words with all their gold targets, in a stable order: most frequent first
    (`word_order="frequency"`, needs `source`; see bridgex.frequency) or seeded shuffled (`"random"`).

    `pairs`: objects with `.source` / `.target` (bridgex.dictionaries.WordPair) or (source, target) tuples.
    skip_identical drops words whose gold equals the word itself: an echo would pass the filter.
    """
    gold: dict[str, list[str]] = {}
    for p in pairs:
        s, t = (p.source, p.target) if hasattr(p, "source") else (p[0], p[1])
        s, t = s.strip(), t.strip()
        if not s or not t:
            continue
        gold.setdefault(s, [])
        if t not in gold[s]:
            gold[s].append(t)
    items = []
    for w, golds in gold.items():
        if skip_identical and normalize_word(w) in {normalize_word(g) for g in golds}:
            continue
        items.append((w, golds))
    if word_order == "frequency" and source is not None:
        golds_of = dict(items)
        return [(w, golds_of[w]) for w in frequency_order(golds_of, source, target, salt=str(seed))]
    if word_order not in ("frequency", "random"):
        raise ProbeSetError(f"word_order must be 'frequency' or 'random', not {word_order!r}")
    items.sort(key=lambda x: x[0])
    random.Random(seed).shuffle(items)
    return items


def matches_gold(answer: str, gold: Iterable[str]) -> bool:
    a = normalize_word(answer)
    return bool(a) and a in {normalize_word(g) for g in gold}


class GoldFilterFailed(ProbeSetError):
    """Too many gold-filter requests failed for the filter's verdict to mean anything."""


async def _filter_window(client: Any, batch: list[tuple[str, list[str]]], source: str, target: str,
                         demos: Sequence[Demo], sem: asyncio.Semaphore,
                         request_id: str | None) -> list[tuple[str | None, str | None]]:
    """(parsed answer, error) per word; each request has the client's own timeout and retries."""
    from bridgex.generation.client import GenerationError, WorkerUnavailable

    async def one(i: int, w: str) -> tuple[str | None, str | None]:
        async with sem:
            try:
                out = await client.complete(word_prompt(w, source, target, demos=demos), max_tokens=16,
                                            temperature=0.0, stop=("\n",),
                                            request_id=f"{request_id}-gf{i}" if request_id else None)
            except WorkerUnavailable:
                raise
            except GenerationError as e:
                return None, f"{type(e).__name__}: {e}"
            return parse_word(out.text), None

    return list(await asyncio.gather(*(one(i, w) for i, (w, _) in enumerate(batch))))


async def abuild_probe_set(
    pairs: Iterable[Any], source: str, target: str, *,
    gold_filter: bool = True, client: Any = None, worker_url: str | None = None, model: str | None = None,
    probe_max: int = 500, probe_min: int = 32, max_examined: int | None = None, concurrency: int = 4,
    demos: Sequence[Demo] = (), fallback: str = "unfiltered", max_error_rate: float = 0.1,
    seed: int = 0, skip_identical: bool = True, word_order: str = "frequency",
    timeout: float = 120.0, retries: int = 2, api_key: str | None = None,
    request_id: str | None = None, progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> ProbeSet:
    """Build the probe set of a pair.

    With the gold filter, words are sent `concurrency` at a time (each request with its own `timeout`, so a
    busy worker slows the filter down instead of failing it) until `probe_max` pass or `max_examined` (default
    4 x probe_max) have been tried, or the pass rate after 4 x probe_min words says the minimum is out of reach
    (a model that cannot do the pair costs ~128 generations, not 2,000). The filter prompt carries `demos` (k
    demonstrations in the chain format, DECISION gold_filter_k; their words are never probes); the probe prompt
    itself stays zero-shot, the activations are those of `S:"w"→T:`. Below `probe_min` kept words, `fallback`
    decides (DECISION): "unfiltered" ranks on the first probe_max words unfiltered and labels the set
    `filter="unfiltered"` with the counts; "fail" raises ProbeSetTooSmall with a message saying what to change.
    """
    if probe_min < 1 or probe_max < probe_min:
        raise ProbeSetError(f"need 1 <= probe_min <= probe_max (got {probe_min}, {probe_max})")
    if fallback not in ("unfiltered", "fail"):
        raise ProbeSetError(f"fallback must be 'unfiltered' or 'fail', not {fallback!r}")
    demo_words = {d.source_text for d in demos}
    words = [(w, g) for w, g in candidate_words(pairs, skip_identical=skip_identical, seed=seed, source=source,
                                                target=target, word_order=word_order) if w not in demo_words]
    available = len(words)
    params = {"gold_filter": gold_filter, "probe_max": probe_max, "probe_min": probe_min, "seed": seed,
              "skip_identical": skip_identical, "word_order": word_order, "filter_k": len(demos),
              "fallback": fallback}
    if available < probe_min:
        raise ProbeSetTooSmall(
            f"the {source}-{target} dictionary has only {available} usable source words (single words, not "
            f"identical to their translation); at least probe_min={probe_min} are needed. Add dictionary "
            f"entries (bridgex data prepare), compose through a pivot, or lower probe_min."
        )

    def unfiltered() -> list[ProbeItem]:
        return [ProbeItem(word=w, gold=g, prompt=word_prompt(w, source, target)) for w, g in words[:probe_max]]

    if not gold_filter:
        items = unfiltered()
        if progress is not None:
            progress(len(items), len(items))
        return _finish(source, target, items, "off", tried=0, kept=0, errors=0, available=available,
                       params=params)
    items: list[ProbeItem] = []
    tried = errors = 0
    limit = min(available, max_examined if max_examined is not None else 4 * probe_max)
    own_client = client is None
    if own_client:
        if not worker_url:
            raise ProbeSetError("the gold filter needs a generation worker: set BRIDGEX_WORKER_URL "
                                "or turn gold_filter off")
        from bridgex.generation.client import GenerationClient

        client = GenerationClient(worker_url, model=model, timeout=timeout, retries=retries,
                                  concurrency=concurrency, api_key=api_key)
        await client.__aenter__()
    sem = asyncio.Semaphore(max(1, concurrency))
    window = max(1, concurrency) * 4
    try:
        while tried < limit and len(items) < probe_max:
            check_cancel(should_cancel, f"gold filter cancelled after {tried} words")
            batch = words[tried: min(limit, tried + window)]
            results = await _filter_window(client, batch, source, target, demos, sem, request_id)
            for (w, golds), (answer, err) in zip(batch, results, strict=True):
                if err is not None:
                    errors += 1
                elif matches_gold(answer or "", golds) and len(items) < probe_max:
                    items.append(ProbeItem(word=w, gold=golds, prompt=word_prompt(w, source, target),
                                           answer=answer))
            tried += len(batch)
            if errors >= 5 and errors > max_error_rate * tried:
                raise GoldFilterFailed(
                    f"{errors} of {tried} gold-filter requests to the generation worker failed (last window: "
                    f"{next((e for _, e in results if e), '')}); check the worker, or submit with "
                    "gold_filter=false")
            if progress is not None:
                progress(tried, limit)
            if len(items) + (limit - tried) < probe_min:
                break  # cannot reach the minimum any more
            if tried >= 4 * probe_min and 2 * len(items) * limit < probe_min * tried:
                break  # hopeless: even twice the pass rate seen so far would not reach the minimum
    finally:
        if own_client:
            await client.__aexit__(None, None, None)
    kept = len(items)
    if kept >= probe_min:
        return _finish(source, target, items, "gold", tried=tried, kept=kept, errors=errors, available=available,
                       params=params)
    if fallback == "fail":
        model = getattr(client, "model", None) or model
        raise ProbeSetTooSmall(
            f"gold filter kept {kept} of {tried} {source}->{target} words (model {model or '?'}, "
            f"{len(demos)} demonstrations); at least probe_min={probe_min} are needed. The model does not "
            f"translate enough of these words correctly: use a stronger model, more demonstrations "
            f"(gold_filter_k), lower probe_min, set probe_fallback=unfiltered, or gold_filter=false."
        )
    return _finish(source, target, unfiltered(), "unfiltered", tried=tried, kept=kept, errors=errors,
                   available=available, params=params)


def _finish(source: str, target: str, items: list[ProbeItem], filter_: str, *, tried: int, kept: int,
            errors: int, available: int, params: dict[str, Any]) -> ProbeSet:
    ps = ProbeSet(source=source, target=target, items=items, gold_filtered=filter_ == "gold", filter=filter_,
                  examined=tried, tried=tried, kept=kept, errors=errors, available=available, params=params)
    ps.hash = ps.content_hash()
    return ps


def build_probe_set(pairs: Iterable[Any], source: str, target: str, **kwargs: Any) -> ProbeSet:
    """Synchronous wrapper of `abuild_probe_set` (Celery tasks, CLI). Must not be called inside a loop."""
    return asyncio.run(abuild_probe_set(pairs, source, target, **kwargs))
