"""Probe sets (method.md step 2): dictionary pairs -> `word_prompt` -> optional gold filter -> capped set.

The gold filter (DECISION, default on; bridgex.generation.gold_filter, the HTTP side) asks the generation worker
to translate each source word greedily and keeps a word only when the parsed answer matches one of its gold
targets: the paper's "the model totally understands" probe. This module is the pure side: candidate words,
gold matching, and the probe set artifact (JSON) with a content hash that goes into the bridge cache key.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from bridgex.atomic import atomic_write_text
from bridgex.dictionaries import group_by_source
from bridgex.frequency import frequency_order
from bridgex.prompts import normalize_word, parse_word, parse_word_partial, word_fold

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
        "off",
        description="gold: words the model translated right; unfiltered: the filter kept fewer than "
        "probe_min, so these are the first words unfiltered (probe_fallback); off: no filter asked.",
    )
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
    payload = {"source": source, "target": target, "items": [[it.word, sorted(it.gold), it.prompt] for it in items]}
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def candidate_words(
    pairs: Iterable[Any],
    *,
    skip_identical: bool = True,
    seed: int = 0,
    source: str | None = None,
    target: str | None = None,
    word_order: str = "frequency",
) -> list[tuple[str, list[str]]]:
    """Unique source words with all their gold targets, in a stable order: most frequent first
    (`word_order="frequency"`, needs `source`; see bridgex.frequency) or seeded shuffled (`"random"`).

    `pairs`: objects with `.source` / `.target` (bridgex.dictionaries.WordPair) or (source, target) tuples.
    skip_identical drops words whose gold equals the word itself: an echo would pass the filter.
    """
    gold = group_by_source(pairs, strip=True)
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


def gold_verdict(output: str, gold: Iterable[str], *, finished: bool) -> bool | None:
    """Whether greedy decoding's answer matches a gold target, judged from the start of its completion:
    True or False when `output` already decides it (`finished`: it is the whole completion), None when only the
    rest of the completion can tell. False only when no continuation of `output` could parse to a gold target
    (`parse_word_partial`), so judging a cut completion never changes a verdict, only when it is known."""
    if finished:
        return matches_gold(parse_word(output), gold)
    got = parse_word_partial(output)
    if got is None:
        return None
    text, whole = got
    if whole:
        return matches_gold(text, gold)
    head = word_fold(text, prefix=True)
    if not head or any(word_fold(g).startswith(head) for g in gold):
        return None
    return False


def finish_probe_set(
    source: str,
    target: str,
    items: list[ProbeItem],
    filter_: str,
    *,
    tried: int,
    kept: int,
    errors: int,
    available: int,
    params: dict[str, Any],
) -> ProbeSet:
    ps = ProbeSet(
        source=source,
        target=target,
        items=items,
        gold_filtered=filter_ == "gold",
        filter=filter_,
        examined=tried,
        tried=tried,
        kept=kept,
        errors=errors,
        available=available,
        params=params,
    )
    ps.hash = ps.content_hash()
    return ps
