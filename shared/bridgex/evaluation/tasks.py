"""The four tasks (method.md step 7): items, demonstrations, the two prompt steps, parsing, scoring.

Every prompt comes from `bridgex.prompts` and every answer is parsed there, so what is measured is exactly
what the service serves. A bridged item takes two generations: step 1 translates the source text into the
bridge (`S:"w"→B:`), step 2 asks for the answer with both shown. Step 1 does not depend on the target or the
condition, so it is shared by every pair and condition that uses the same bridge (same prompt string, one
cache entry).

Item selection is deterministic: BLI words are ordered most frequent first (bridgex.frequency), other items
by a hash of their id, so `--limit N`
takes a stable subset (raising N keeps the earlier items and their cached generations), and demonstrations
never overlap evaluation items (BLI: probe vs eval split, disjoint by source word; MT/MRC/CLS: demos are set
aside first and excluded from the evaluation set for every k, so zero- and k-shot score the same items).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridgex import prompts
from bridgex.dictionaries import group_by_source
from bridgex.evaluation import metrics
from bridgex.evaluation.generate import Request
from bridgex.evaluation.loaders import (
    EvalDataError,
    find_language_file,
    load_belebele,
    load_sib200,
    sib200_file,
)
from bridgex.frequency import frequency_order

__all__ = ["TASKS", "BLITask", "ClsTask", "EvalItem", "MRCTask", "MTTask", "TaskData", "hash_order"]


def hash_order(keys: Iterable[str], salt: str = "") -> list[str]:
    """Keys in a stable pseudo-random order (sha256 of salt + key)."""
    return sorted(set(keys), key=lambda k: (hashlib.sha256(f"{salt}\x00{k}".encode()).hexdigest(), k))


@dataclass(frozen=True)
class EvalItem:
    """One evaluation item; `source` is what step 1 translates into the bridge."""

    id: str
    source: str
    gold: Any  # BLI: tuple of targets; MT: reference text; MRC: "A".."D"; CLS: label
    question: str | None = None
    options: tuple[str, ...] | None = None


@dataclass
class TaskData:
    """Where task data lives: the prepared data dir (DataLayout) plus optional Belebele / SIB-200 folders."""

    data_dir: Path | None = None
    belebele_dir: Path | None = None
    sib_dir: Path | None = None
    _layout: Any = None

    @property
    def layout(self) -> Any:
        if self._layout is None:
            if self.data_dir is None:
                raise EvalDataError("this task needs --data-dir (the folder `bridgex data prepare` wrote)")
            from bridgex.data.layout import DataLayout

            self._layout = DataLayout(self.data_dir)
        return self._layout


def _translations(d: Any) -> dict[str, list[str]]:
    """Source -> gold targets from a bridgex Dictionary (or a mapping / iterable of pairs)."""
    if hasattr(d, "translations"):
        return d.translations()
    if isinstance(d, dict):
        return {k: list(v) if isinstance(v, list | tuple) else [v] for k, v in d.items()}
    return group_by_source(d)


def _segments(articles: Any) -> dict[str, str]:
    """MT segments from UDHR articles: one per paragraph (`<article>.<i>`), or the whole article (`<article>`)
    when it has one paragraph. Segment ids only match across languages whose article splits alike, so
    paragraph-level items are used exactly where they are parallel."""
    out: dict[str, str] = {}
    items = articles.items() if isinstance(articles, dict) else enumerate(articles)
    for art, paras in items:
        paras = [paras] if isinstance(paras, str) else list(paras)
        paras = [" ".join(str(p).split()) for p in paras if str(p).strip()]
        if len(paras) == 1:
            out[str(art)] = paras[0]
        else:
            out.update({f"{art}.{i}:{len(paras)}": p for i, p in enumerate(paras)})
    return out


def _mt_budget(text: str, cap: int) -> int:
    """max_tokens for translating `text`: ~1.5x its size in tokens (bytes/3 over-counts Latin, fits CJK)."""
    return int(min(cap, max(24, math.ceil(1.5 * len(text.encode("utf-8")) / 3) + 8)))


class BaseTask:
    name = ""
    metric = "accuracy"
    final_max_tokens = 16

    def __init__(self, data: TaskData, *, mt_max_tokens: int = 256) -> None:
        self.data = data
        self.mt_max_tokens = mt_max_tokens

    # -- data ------------------------------------------------------------------------------------------
    def load(self, src: str, tgt: str, limit: int | None, k: int) -> tuple[list[EvalItem], list[EvalItem]]:
        """(evaluation items, k demonstration items)."""
        raise NotImplementedError

    # -- prompts ---------------------------------------------------------------------------------------
    def bridge_request(self, item: EvalItem, src: str, bridge: str, demos: Sequence[prompts.Demo]) -> Request:
        """Step 1: the item's source text into the bridge (sentence chain; BLI overrides with words)."""
        return Request(
            prompts.sentence_prompt(item.source, src, bridge, demos=demos), _mt_budget(item.source, self.mt_max_tokens)
        )

    def parse_bridge(self, text: str) -> str:
        return prompts.parse_sentence(text)

    def final_request(
        self,
        item: EvalItem,
        src: str,
        tgt: str,
        bridge: str | None,
        bridge_text: str | None,
        demos: Sequence[EvalItem],
        demo_bridge: dict[str, str] | None = None,
    ) -> Request:
        """Step 2 (or the only step without a bridge)."""
        raise NotImplementedError

    def parse(self, text: str, item: EvalItem) -> Any:
        raise NotImplementedError

    # -- scoring ---------------------------------------------------------------------------------------
    def item_score(self, pred: Any, item: EvalItem) -> float:
        return float(pred == item.gold)

    def estimate(self, preds: list[Any], items: list[EvalItem]) -> metrics.Estimate:
        hits = [self.item_score(p, i) >= 1.0 for p, i in zip(preds, items, strict=True)]
        return metrics.proportion_estimate(hits)

    chain_demos = False
    """True when demonstrations are full chains (BLI, MT): they then need the demo texts in each bridge."""

    def demo_bridge_gold(self, src: str, bridge: str, demos: list[EvalItem]) -> dict[str, str]:
        """Gold translations of the demo source texts into `bridge`, where the data has them."""
        return {}

    def step1_demos(self, demos: Sequence[EvalItem], demo_bridge: dict[str, str]) -> list[prompts.Demo]:
        """Demonstrations for step 1 (source -> bridge) in chain tasks; [] for MRC/CLS (zero-shot step 1)."""
        if not self.chain_demos:
            return []
        return [prompts.Demo(d.source, demo_bridge[d.id]) for d in demos if d.id in demo_bridge]


class BLITask(BaseTask):
    """Bilingual lexicon induction on the prepared dictionaries; P@1 over unique source words."""

    name = "bli"
    metric = "p@1"
    chain_demos = True
    final_max_tokens = 16

    def load(self, src: str, tgt: str, limit: int | None, k: int) -> tuple[list[EvalItem], list[EvalItem]]:
        layout = self.data.layout
        ev = _translations(layout.dictionary(src, tgt, part="eval"))
        if not ev:
            raise EvalDataError(f"no BLI evaluation entries for {src}-{tgt} under {self.data.data_dir}")
        # most frequent source words first (bridgex.frequency): a fixed, model-independent order, and words a
        # model can know; a random draw from 100k-entry dictionaries is mostly rare vocabulary
        order = frequency_order(ev, src, tgt, salt=f"bli:{src}-{tgt}")
        if limit:
            order = order[:limit]
        items = [EvalItem(w, w, tuple(ev[w])) for w in order]
        demos: list[EvalItem] = []
        if k > 0:
            probe = _translations(layout.dictionary(src, tgt, part="probe"))
            words = [w for w in frequency_order(probe, src, tgt, salt=f"demo:{src}-{tgt}") if w not in ev][:k]
            if len(words) < k:
                raise EvalDataError(f"{src}-{tgt}: only {len(words)} probe words for {k} demonstrations")
            demos = [EvalItem(w, w, tuple(probe[w])) for w in words]
        return items, demos

    def demo_bridge_gold(self, src: str, bridge: str, demos: list[EvalItem]) -> dict[str, str]:
        """Gold bridge words for the demo words, from the prepared src-bridge dictionary where it has them."""
        out: dict[str, str] = {}
        for part in ("probe", "eval"):
            try:
                tr = _translations(self.data.layout.dictionary(src, bridge, part=part))
            except (FileNotFoundError, EvalDataError, KeyError, ValueError):
                continue
            for d in demos:
                if d.id not in out and tr.get(d.id):
                    out[d.id] = tr[d.id][0]
        return out

    def bridge_request(self, item: EvalItem, src: str, bridge: str, demos: Sequence[prompts.Demo]) -> Request:
        return Request(prompts.word_prompt(item.source, src, bridge, demos=demos), 16)

    def parse_bridge(self, text: str) -> str:
        return prompts.parse_word(text)

    def final_request(
        self,
        item: EvalItem,
        src: str,
        tgt: str,
        bridge: str | None,
        bridge_text: str | None,
        demos: Sequence[EvalItem],
        demo_bridge: dict[str, str] | None = None,
    ) -> Request:
        db = (demo_bridge or {}) if bridge else {}
        ds = [prompts.Demo(d.source, d.gold[0], db.get(d.id)) for d in demos]
        return Request(
            prompts.word_prompt(item.source, src, tgt, bridge=bridge, bridge_word=bridge_text, demos=ds),
            self.final_max_tokens,
        )

    def parse(self, text: str, item: EvalItem) -> str:
        return prompts.parse_word(text)

    def item_score(self, pred: Any, item: EvalItem) -> float:
        return float(metrics.word_correct(pred, item.gold, prompts.normalize_word))


class MTTask(BaseTask):
    """Sentence MT on UDHR articles (parallel by article); corpus chrF with a bootstrap interval."""

    name = "mt"
    metric = "chrf"
    chain_demos = True

    def load(self, src: str, tgt: str, limit: int | None, k: int) -> tuple[list[EvalItem], list[EvalItem]]:
        layout = self.data.layout
        seg_s, seg_t = _segments(layout.udhr_articles(src)), _segments(layout.udhr_articles(tgt))
        common = [a for a in seg_s if a in seg_t]
        if not common:
            raise EvalDataError(f"no parallel UDHR segments for {src}-{tgt} under {self.data.data_dir}")
        # Demonstrations: the 3 shortest segments (short prompts), set aside for every k.
        demo_ids = sorted(common, key=lambda a: (len(seg_s[a]) + len(seg_t[a]), a))[:3]
        pool = [a for a in common if a not in demo_ids]
        order = hash_order(pool, f"mt:{src}-{tgt}")
        if limit:
            order = order[:limit]
        items = [EvalItem(a, seg_s[a], seg_t[a]) for a in order]
        demos = [EvalItem(a, seg_s[a], seg_t[a]) for a in demo_ids[:k]]
        return items, demos

    def demo_bridge_gold(self, src: str, bridge: str, demos: list[EvalItem]) -> dict[str, str]:
        try:
            seg_b = _segments(self.data.layout.udhr_articles(bridge))
        except FileNotFoundError:
            return {}
        return {d.id: seg_b[d.id] for d in demos if d.id in seg_b}

    def final_request(
        self,
        item: EvalItem,
        src: str,
        tgt: str,
        bridge: str | None,
        bridge_text: str | None,
        demos: Sequence[EvalItem],
        demo_bridge: dict[str, str] | None = None,
    ) -> Request:
        db = (demo_bridge or {}) if bridge else {}
        ds = [prompts.Demo(d.source, d.gold, db.get(d.id)) for d in demos]
        return Request(
            prompts.sentence_prompt(item.source, src, tgt, bridge=bridge, bridge_text=bridge_text, demos=ds),
            _mt_budget(item.source, self.mt_max_tokens),
        )

    def parse(self, text: str, item: EvalItem) -> str:
        return prompts.parse_sentence(text)

    def item_score(self, pred: Any, item: EvalItem) -> float:
        return metrics.chrf([pred], [item.gold])

    def estimate(self, preds: list[Any], items: list[EvalItem]) -> metrics.Estimate:
        return metrics.chrf_estimate(preds, [i.gold for i in items])


class MRCTask(BaseTask):
    """Belebele-format reading comprehension: passage in the source language, question and options in the
    target language; accuracy."""

    name = "mrc"
    final_max_tokens = 4

    def load(self, src: str, tgt: str, limit: int | None, k: int) -> tuple[list[EvalItem], list[EvalItem]]:
        if self.data.belebele_dir is None:
            raise EvalDataError("task mrc needs --belebele DIR (Belebele JSONL files named by FLORES code)")
        s_items = {i.id: i for i in load_belebele(find_language_file(self.data.belebele_dir, src))}
        t_items = {i.id: i for i in load_belebele(find_language_file(self.data.belebele_dir, tgt))}
        common = [i for i in s_items if i in t_items]
        if not common:
            raise EvalDataError(f"Belebele files for {src} and {tgt} share no (link, question_number)")
        demo_ids = hash_order(common, "mrc-demo")[:3]
        demo_links = {d.split("#")[0] for d in demo_ids}
        pool = [i for i in common if i not in demo_ids and i.split("#")[0] not in demo_links]
        order = hash_order(pool, f"mrc:{src}-{tgt}")
        if limit:
            order = order[:limit]

        def item(i: str) -> EvalItem:
            s, t = s_items[i], t_items[i]
            return EvalItem(i, s.passage, t.answer, question=t.question, options=t.choices)

        return [item(i) for i in order], [item(i) for i in demo_ids[:k]]

    def final_request(
        self,
        item: EvalItem,
        src: str,
        tgt: str,
        bridge: str | None,
        bridge_text: str | None,
        demos: Sequence[EvalItem],
        demo_bridge: dict[str, str] | None = None,
    ) -> Request:
        ds = [prompts.MRCDemo(d.source, d.question or "", tuple(d.options or ()), d.gold) for d in demos]
        p = prompts.mrc_prompt(
            item.source,
            item.question or "",
            list(item.options or ()),
            bridge=bridge if bridge_text is not None else None,
            bridge_passage=bridge_text,
            demos=ds,
        )
        return Request(p, self.final_max_tokens)

    def parse(self, text: str, item: EvalItem) -> str | None:
        return prompts.parse_choice(text, item.options)


class ClsTask(BaseTask):
    """SIB-200-format topic classification of source-language text (labels as in SIB-200); accuracy.
    The target language of the pair plays no part (the label set is the dataset's English one)."""

    name = "cls"
    final_max_tokens = 8

    def load(self, src: str, tgt: str, limit: int | None, k: int) -> tuple[list[EvalItem], list[EvalItem]]:
        if self.data.sib_dir is None:
            raise EvalDataError("task cls needs --sib DIR (SIB-200 layout: <flores code>/test.tsv)")
        test = load_sib200(sib200_file(self.data.sib_dir, src, "test"))
        order = hash_order([i.id for i in test], f"cls:{src}")
        by_id = {i.id: i for i in test}
        if limit:
            order = order[:limit]
        items = [EvalItem(i, by_id[i].text, by_id[i].label) for i in order]
        demos: list[EvalItem] = []
        if k > 0:
            try:
                train = load_sib200(sib200_file(self.data.sib_dir, src, "train"))
            except EvalDataError:
                train = load_sib200(sib200_file(self.data.sib_dir, src, "dev"))
            tr = {i.id: i for i in train if i.id not in by_id}
            demos = [EvalItem(i, tr[i].text, tr[i].label) for i in hash_order(tr, f"cls-demo:{src}")[:k]]
        return items, demos

    def final_request(
        self,
        item: EvalItem,
        src: str,
        tgt: str,
        bridge: str | None,
        bridge_text: str | None,
        demos: Sequence[EvalItem],
        demo_bridge: dict[str, str] | None = None,
    ) -> Request:
        ds = [prompts.ClsDemo(d.source, d.gold) for d in demos]
        p = prompts.cls_prompt(
            item.source, bridge=bridge if bridge_text is not None else None, bridge_text=bridge_text, demos=ds
        )
        return Request(p, self.final_max_tokens)

    def parse(self, text: str, item: EvalItem) -> str | None:
        return prompts.parse_label(text)


TASKS: dict[str, type[BaseTask]] = {"bli": BLITask, "mt": MTTask, "mrc": MRCTask, "cls": ClsTask}
