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
import os
import random
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from bridgex.frequency import frequency_order
from bridgex.prompts import normalize_word, parse_word, word_prompt

ProgressFn = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]

PROBE_FORMAT = "bridgex-probes/1"


class ProbeSetError(ValueError):
    """The probe set cannot be built; the message says what to change."""


class ProbeSetTooSmall(ProbeSetError):
    pass


class ProbeCancelled(Exception):
    """should_cancel() returned True between gold-filter batches."""


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
    examined: int = Field(0, description="Unique source words examined (before the cap / filter).")
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


def atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


async def abuild_probe_set(
    pairs: Iterable[Any], source: str, target: str, *,
    gold_filter: bool = True, client: Any = None, worker_url: str | None = None, model: str | None = None,
    probe_max: int = 500, probe_min: int = 32, max_examined: int | None = None, batch_size: int = 32,
    seed: int = 0, skip_identical: bool = True, word_order: str = "frequency",
    timeout: float = 60.0, retries: int = 2,
    request_id: str | None = None, progress: ProgressFn | None = None,
    should_cancel: ShouldCancel | None = None,
) -> ProbeSet:
    """Build the probe set of a pair. With the gold filter, words are sent in batches until `probe_max` pass
    or `max_examined` (default 4 x probe_max) have been tried. Raises ProbeSetTooSmall below `probe_min`."""
    if probe_min < 1 or probe_max < probe_min:
        raise ProbeSetError(f"need 1 <= probe_min <= probe_max (got {probe_min}, {probe_max})")
    words = candidate_words(pairs, skip_identical=skip_identical, seed=seed, source=source, target=target,
                            word_order=word_order)
    available = len(words)
    params = {"gold_filter": gold_filter, "probe_max": probe_max, "probe_min": probe_min, "seed": seed,
              "skip_identical": skip_identical, "word_order": word_order}
    if available < probe_min:
        raise ProbeSetTooSmall(
            f"the {source}-{target} dictionary has only {available} usable source words (single words, not "
            f"identical to their translation); at least probe_min={probe_min} are needed. Add dictionary "
            f"entries (bridgex data prepare), compose through a pivot, or lower probe_min."
        )
    items: list[ProbeItem] = []
    examined = 0
    if not gold_filter:
        for w, golds in words[:probe_max]:
            items.append(ProbeItem(word=w, gold=golds, prompt=word_prompt(w, source, target)))
        examined = len(items)
        if progress is not None:
            progress(examined, examined)
    else:
        limit = min(available, max_examined if max_examined is not None else 4 * probe_max)
        own_client = client is None
        if own_client:
            if not worker_url:
                raise ProbeSetError("the gold filter needs a generation worker: set BRIDGEX_WORKER_URL "
                                    "or turn gold_filter off")
            from bridgex.client import GenerationClient

            client = GenerationClient(worker_url, model=model, timeout=timeout, retries=retries)
            await client.__aenter__()
        try:
            while examined < limit and len(items) < probe_max:
                if should_cancel is not None and should_cancel():
                    raise ProbeCancelled(f"gold filter cancelled after {examined} words")
                # never send more than could still be kept, but keep batches useful
                batch = words[examined: min(limit, examined + batch_size)]
                prompts = [word_prompt(w, source, target) for w, _ in batch]
                outs = await client.complete_many(prompts, max_tokens=16, temperature=0.0, stop=("\n",),
                                                  request_id=request_id)
                for (w, golds), prompt, out in zip(batch, prompts, outs, strict=True):
                    answer = parse_word(out.text)
                    if matches_gold(answer, golds) and len(items) < probe_max:
                        items.append(ProbeItem(word=w, gold=golds, prompt=prompt, answer=answer))
                examined += len(batch)
                if progress is not None:
                    progress(examined, limit)
                if len(items) + (limit - examined) < probe_min:
                    break  # cannot reach the minimum any more
        finally:
            if own_client:
                await client.__aexit__(None, None, None)
        if len(items) < probe_min:
            model = getattr(client, "model", None) or model
            raise ProbeSetTooSmall(
                f"gold filter kept {len(items)} of {examined} {source}->{target} words "
                f"(model {model or '?'}); at least probe_min={probe_min} are needed. The model does not "
                f"translate enough of these words "
                f"correctly: use a stronger model, a larger dictionary (raise the examined limit), lower "
                f"probe_min, or set gold_filter=false."
            )
    ps = ProbeSet(source=source, target=target, items=items, gold_filtered=gold_filter, examined=examined,
                  available=available, params=params)
    ps.hash = ps.content_hash()
    return ps


def build_probe_set(pairs: Iterable[Any], source: str, target: str, **kwargs: Any) -> ProbeSet:
    """Synchronous wrapper of `abuild_probe_set` (Celery tasks, CLI). Must not be called inside a loop."""
    return asyncio.run(abuild_probe_set(pairs, source, target, **kwargs))
