"""Greedy completions from the analyzer's own model, with each demonstration block computed once (issue 21).

The gold filter and the dev validation send thousands of prompts that differ only in their last line: the pair's
demonstrations come first, then the query. vLLM's CPU backend caches a prompt's KV only in whole 32-token blocks,
so every request there recomputes the demonstration block's last, partial block as well as its own query. Here the
block's KV is computed once per process (`prefix_entries` kept, least recently used first out) and each request
computes only its query line: the tokens after the prompt's last newline.

`LocalEngine.complete` answers as `GenerationClient.complete` does for the greedy, newline-stopped requests the
measurement sends: the text up to (without) the first stop string, `finish_reason` "stop" at a stop string or an
end token and "length" at `max_tokens`. Requests in flight are gathered into batches of up to `max_batch` rows, run
in a thread so the event loop stays free. A row carries its own block's KV, padded on the left to the batch's
longest block, then its query line, padded on the left too; the padding is masked and each row keeps its own
positions, so a row computes what it would alone. (`mix_blocks=False` batches each block's rows apart, as the first
version did: a validation look brings several blocks back at once, and apart they fill the batches less.) A row
leaves the batch when its answer ends.

It measures the served model only where the worker serves the same weights in the same dtype: the caller checks
that (services.analyzer.stages.common.measuring_engine). `python -m benchmarks measure` compares its answers with
the worker's greedy decodes word for word.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bridgex.generation.client import Completion, GenerationFailed, Usage


@dataclass
class EngineStats:
    """What the engine computed: prompt tokens asked and computed (query lines plus demonstration blocks not yet
    cached), generated tokens, batched forward passes and requests."""

    requests: int = 0
    prompt_tokens: int = 0
    computed_prompt_tokens: int = 0
    generated_tokens: int = 0
    forwards: int = 0
    prefix_hits: int = 0
    prefix_misses: int = 0


@dataclass
class _Request:
    prompt: str
    max_tokens: int
    stop: tuple[str, ...]
    future: asyncio.Future[Completion]
    request_id: str
    ids: list[int] = field(default_factory=list)
    out: list[int] = field(default_factory=list)
    text: str = ""
    reason: str | None = None


def _split(prompt: str) -> tuple[str, str]:
    """(demonstration block, query line): the block ends with the prompt's last newline."""
    cut = prompt.rfind("\n") + 1
    return prompt[:cut], prompt[cut:]


class LocalEngine:
    """Batched greedy completions over a causal LM in this process; `complete` is GenerationClient's, for
    greedy requests. Use as an async context manager (one per event loop); `stats` counts the work done."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch: int = 64,
        prefix_entries: int = 16,
        name: str | None = None,
        mix_blocks: bool = True,
    ) -> None:
        if max_batch < 1 or prefix_entries < 1:
            raise ValueError("max_batch and prefix_entries must be at least 1")
        self.model_obj = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.mix_blocks = mix_blocks
        self.model = name or str(getattr(getattr(model, "config", None), "name_or_path", "") or "local")
        self.stats = EngineStats()
        gen = getattr(model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list | tuple) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(int(tokenizer.eos_token_id))
        self._eos = frozenset(int(e) for e in eos_ids)
        self._pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        self._device = first.device if first is not None else torch.device("cpu")
        self._prefixes: OrderedDict[str, tuple[list[int], Any]] = OrderedDict()
        self._prefix_entries = prefix_entries
        self._pending: list[_Request] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def __aenter__(self) -> LocalEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._runner is not None and self._loop is asyncio.get_running_loop():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        for r in self._pending:
            if not r.future.done():
                r.future.set_exception(GenerationFailed("the local engine was closed"))
        self._pending.clear()

    async def complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 16,
        temperature: float = 0.0,
        stop: Sequence[str] | None = ("\n",),
        request_id: str | None = None,
        top_p: float = 1.0,
        seed: int | None = None,
        logprobs: int = 0,
    ) -> Completion:
        """One greedy completion; sampling and log-probabilities are the worker's (GenerationClient)."""
        del seed
        if temperature != 0.0 or top_p != 1.0 or logprobs:
            raise ValueError("the local engine decodes greedily only (temperature 0, top_p 1, no logprobs)")
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self._closed:
            raise GenerationFailed("the local engine is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (each asyncio.run of a stage): a runner of its own
            self._loop, self._wake, self._runner = loop, asyncio.Event(), None
            self._pending = [r for r in self._pending if r.future.get_loop() is loop]
        assert self._wake is not None
        req = _Request(prompt, int(max_tokens), tuple(stop or ()), loop.create_future(), request_id or uuid.uuid4().hex)
        self._pending.append(req)
        self._wake.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run())
        return await req.future

    def clear_prefixes(self) -> None:
        """Forget the demonstration blocks' KV (a benchmark run then pays what a new pair pays)."""
        with self._lock:
            self._prefixes.clear()

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let the callers woken by the last batch send their next requests
            batch = [r for r in self._pending if not r.future.done()]
            self._pending.clear()
            if not batch:
                continue
            try:
                await asyncio.to_thread(self._serve, batch)
            except Exception as e:  # the model failed: every request of the batch says so
                err = GenerationFailed(f"the local engine failed: {type(e).__name__}: {e}")
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(err)
                continue
            for r in batch:
                if r.future.done():
                    continue  # cancelled by its caller meanwhile
                usage = Usage(len(r.ids), len(r.out), len(r.ids) + len(r.out))
                r.future.set_result(Completion(r.text, r.reason, usage, model=self.model, request_id=r.request_id))

    # ------------------------------------------------------------------------------------------- the model side
    def _serve(self, batch: list[_Request]) -> None:
        groups: dict[str, list[_Request]] = {}
        for r in batch:
            groups.setdefault(_split(r.prompt)[0], []).append(r)
        runs = list(groups.values()) if not self.mix_blocks else [[r for reqs in groups.values() for r in reqs]]
        with self._lock, torch.inference_mode():
            for reqs in runs:
                for i in range(0, len(reqs), self.max_batch):
                    self._decode(reqs[i : i + self.max_batch])

    def _prefix(self, block: str) -> tuple[list[int], Any]:
        """The block's token ids and KV (computed on a miss; least recently used out)."""
        got = self._prefixes.get(block)
        if got is not None:
            self._prefixes.move_to_end(block)
            self.stats.prefix_hits += 1
            return got
        ids = self.tokenizer(block)["input_ids"]
        out = self.model_obj(input_ids=torch.tensor([ids], device=self._device), use_cache=True, logits_to_keep=1)
        self.stats.forwards += 1
        self.stats.prefix_misses += 1
        self.stats.computed_prompt_tokens += len(ids)
        got = (list(ids), out.past_key_values)
        self._prefixes[block] = got
        while len(self._prefixes) > self._prefix_entries:
            self._prefixes.popitem(last=False)
        return got

    def _decode(self, reqs: list[_Request]) -> None:
        """One batch: each row's block KV (right-aligned after left padding to the longest block, the padding
        masked), then its query line (left-padded), then greedy decoding."""
        rows: list[_Request] = []
        blocks: list[tuple[list[int], Any]] = []
        for r in reqs:
            pids, kv = self._prefix(_split(r.prompt)[0])
            r.ids = self.tokenizer(r.prompt)["input_ids"]
            if r.ids[: len(pids)] != pids or len(r.ids) == len(pids):
                # the block does not tokenize on its own as inside the prompt: compute this prompt whole
                self._decode_alone(r)
                continue
            rows.append(r)
            blocks.append((pids, kv))
        if not rows:
            return
        suffixes = [r.ids[len(pids) :] for r, (pids, _) in zip(rows, blocks, strict=True)]
        b, width = len(rows), max(map(len, suffixes))
        pmax = max(len(pids) for pids, _ in blocks)
        ids = torch.full((b, width), self._pad, dtype=torch.long)
        mask = torch.zeros((b, pmax + width), dtype=torch.long)
        pos = torch.zeros((b, width), dtype=torch.long)
        for i, (s, (pids, _)) in enumerate(zip(suffixes, blocks, strict=True)):
            n, p = len(s), len(pids)
            ids[i, width - n :] = torch.tensor(s)
            mask[i, pmax - p : pmax] = 1
            mask[i, pmax + width - n :] = 1
            pos[i, :] = p
            pos[i, width - n :] = torch.arange(p, p + n)
        ids, mask, pos = ids.to(self._device), mask.to(self._device), pos.to(self._device)
        self.stats.requests += b
        self.stats.prompt_tokens += sum(len(r.ids) for r in rows)
        self.stats.computed_prompt_tokens += sum(map(len, suffixes))
        self._greedy(rows, ids, mask, pos, self._batch_cache(blocks, pmax))

    @staticmethod
    def _batch_cache(blocks: list[tuple[list[int], Any]], pmax: int) -> Any:
        """A cache of len(blocks) rows, row i holding block i's KV right-aligned in `pmax` slots: the longest
        block's cache repeated (so its layers' lengths and counters are pmax), then every other block's KV written
        over its rows (the left padding stays zero and masked)."""
        template = next(kv for pids, kv in blocks if len(pids) == pmax)
        cache = copy.deepcopy(template)
        cache.batch_repeat_interleave(len(blocks))
        rows_of: dict[int, list[int]] = {}
        for i, (_, kv) in enumerate(blocks):
            if kv is not template:
                rows_of.setdefault(id(kv), []).append(i)
        if not rows_of:
            return cache
        by_id = {id(kv): (len(pids), kv) for pids, kv in blocks}
        for layer_no, layer in enumerate(cache.layers):
            keys, values = layer.keys.clone(), layer.values.clone()
            for key, idx in rows_of.items():
                p, kv = by_id[key]
                src = kv.layers[layer_no]
                at = torch.tensor(idx, device=keys.device)
                keys[at, :, : pmax - p] = 0
                values[at, :, : pmax - p] = 0
                keys[at, :, pmax - p :] = src.keys[0]
                values[at, :, pmax - p :] = src.values[0]
            layer.keys, layer.values = keys, values
        return cache

    def _decode_alone(self, r: _Request) -> None:
        n = len(r.ids)
        self.stats.requests += 1
        self.stats.prompt_tokens += n
        self.stats.computed_prompt_tokens += n
        ids = torch.tensor([r.ids], device=self._device)
        self._greedy([r], ids, torch.ones_like(ids), torch.arange(n, device=self._device)[None, :], None)

    def _greedy(self, rows: list[_Request], ids: Any, mask: Any, pos: Any, cache: Any) -> None:
        """Decode `rows` greedily from their prompt forward; a row leaves the batch when it ends."""
        live = list(range(len(rows)))
        while True:
            out = self.model_obj(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            self.stats.forwards += 1
            cache = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1).tolist()
            keep: list[int] = []
            for j, (i, tok) in enumerate(zip(live, nxt, strict=True)):
                r = rows[i]
                self.stats.generated_tokens += 1
                if self._step(r, int(tok)):
                    keep.append(j)
            if not keep:
                return
            if len(keep) < len(live):
                idx = torch.tensor(keep, device=self._device)
                cache.batch_select_indices(idx)
                mask, pos = mask[idx], pos[idx]
                nxt = [nxt[j] for j in keep]
                live = [live[j] for j in keep]
            ids = torch.tensor(nxt, device=self._device)[:, None]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            pos = pos[:, -1:] + 1

    def _step(self, r: _Request, tok: int) -> bool:
        """Add one generated token to `r`; False when its answer ended (stop string, end token, max_tokens)."""
        if tok in self._eos:
            r.reason = "stop"
            r.out.append(tok)
            return False
        r.out.append(tok)
        text = self.tokenizer.decode(r.out, skip_special_tokens=True)
        cuts = [i for i in (text.find(s) for s in r.stop if s) if i >= 0]
        if cuts:
            r.text, r.reason = text[: min(cuts)], "stop"
            return False
        r.text = text
        if len(r.out) >= r.max_tokens:
            r.reason = "length"
            return False
        return True


__all__ = ["EngineStats", "LocalEngine"]
