"""Dynamic batching generation engine for the CPU worker.

Requests go into an asyncio queue (bounded: `max_queue` waiting -> QueueFull -> 429). One batcher task takes
the first waiting request, waits up to `batch_wait_ms` for more (up to `max_batch_size`), and hands the batch
to a single generation thread, so the event loop keeps accepting requests while the model runs. Requests that
arrive while a batch runs join it at the next decode step (continuous batching): they are prefilled on their
own, their KV cache is left-padded to the running length and concatenated on the batch axis. Without this,
closed-loop clients fragment into small batches (one straggler arriving a few ms late waits a whole batch).

Why our own decode loop and not `model.generate` with a StoppingCriteria per row: `generate` keeps finished
rows in the batch until the longest one ends (it only pads them), and it has one max length for the batch.
Here each step drops finished rows from the KV cache (`DynamicCache.batch_select_indices`), so a short answer
stops costing work, and every row has its own max_tokens, stop strings, temperature/top_p and seed. Inputs are
built exactly like `generate` builds them (left padding, 2-D attention mask, position ids = cumsum(mask) - 1),
so greedy output equals `model.generate` token for token; tests check that, also in mixed-length batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import queue
import random
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger("bridgex.worker.engine")


class EngineError(RuntimeError):
    """Base for engine failures the API maps to HTTP answers."""


class QueueFull(EngineError):
    """The bounded queue is full (HTTP 429)."""


class EngineNotRunning(EngineError):
    """The engine is stopped or not started yet (HTTP 503)."""


class GenerationTimeout(EngineError):
    """The request did not finish within its timeout (HTTP 504)."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" | "length" | "abort"
    prompt_tokens: int
    stop_reason: str | int | None = None  # the stop string or EOS id that ended it (vLLM's field)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    request_id: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    stream: asyncio.Queue | None = None
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    # decode-loop state (generation thread only)
    out_ids: list[int] = field(default_factory=list)
    emitted: int = 0
    generator: torch.Generator | None = None

    def deliver(self, result: GenerationResult | BaseException) -> None:
        def _set() -> None:
            if not self.future.done():
                if isinstance(result, BaseException):
                    self.future.set_exception(result)
                else:
                    self.future.set_result(result)
            if self.stream is not None:
                self.stream.put_nowait(result)

        self.loop.call_soon_threadsafe(_set)

    def push_delta(self, text: str) -> None:
        if self.stream is not None and text:
            self.loop.call_soon_threadsafe(self.stream.put_nowait, text)


class Engine:
    """Owns the model; one generation thread; many concurrent callers via `generate` / `stream`."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 16, batch_wait_ms: float = 5.0,
                 max_queue: int = 256, metrics: Any = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size, self.batch_wait = max_batch_size, batch_wait_ms / 1000.0
        self.max_queue, self.metrics = max_queue, metrics
        self.device = next(model.parameters()).device
        gen_cfg = getattr(model, "generation_config", None)
        eos = getattr(gen_cfg, "eos_token_id", None)
        if eos is None:
            eos = tokenizer.eos_token_id
        eos_list = eos if isinstance(eos, list | tuple) else [eos] if eos is not None else []
        self.eos_ids: set[int] = set(eos_list)
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0)
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # transformers 5.2x vs older
        self._queue: asyncio.Queue[_Request] | None = None
        self._inbox: queue.Queue[_Request] = queue.Queue()  # batcher -> running batch (thread-safe)
        self._held: list[_Request] = []  # taken from the inbox but not admitted: first in the next batch
        self._touched: list[_Request] = []  # every request of the running batch, joined ones included
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.running_batch = 0
        self.batches_run = 0
        self._thread_alive = False

    # ------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridgex-generate")
        self._task = asyncio.create_task(self._batcher(), name="bridgex-batcher")
        self._thread_alive = True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait().deliver(EngineNotRunning("worker is shutting down"))
        while not self._inbox.empty():
            self._held.append(self._inbox.get_nowait())
        for r in self._held:
            r.deliver(EngineNotRunning("worker is shutting down"))
        self._held = []
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._thread_alive = False
        self._task = None

    @property
    def healthy(self) -> bool:
        return self._thread_alive and self._task is not None and not self._task.done()

    @property
    def queue_depth(self) -> int:
        return (self._queue.qsize() if self._queue is not None else 0) + self._inbox.qsize() + len(self._held)

    # ------------------------------------------------------------------------------------ public API
    def tokenize(self, prompt: str) -> list[int]:
        """Token ids exactly as `tokenizer(prompt)` gives them (BOS included when the tokenizer adds it)."""
        return list(self.tokenizer(prompt)["input_ids"])

    def submit(self, prompt_ids: Sequence[int], params: SamplingParams, request_id: str = "",
               stream: bool = False) -> _Request:
        """Enqueue without waiting; raises QueueFull / EngineNotRunning."""
        if not self.healthy or self._queue is None:
            raise EngineNotRunning("generation engine is not running")
        if not prompt_ids:
            raise ValueError("empty prompt")
        loop = asyncio.get_running_loop()
        req = _Request(list(prompt_ids), params, request_id, loop, loop.create_future(),
                       asyncio.Queue() if stream else None)
        if self.queue_depth >= self.max_queue:
            raise QueueFull(f"queue full ({self.max_queue} requests waiting); retry later")
        self._queue.put_nowait(req)
        return req

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams, request_id: str = "",
                       timeout: float | None = None) -> GenerationResult:
        req = self.submit(prompt_ids, params, request_id)
        try:
            return await asyncio.wait_for(asyncio.shield(req.future), timeout)
        except TimeoutError as e:
            req.cancelled = True
            raise GenerationTimeout(f"generation did not finish within {timeout:g}s") from e
        except asyncio.CancelledError:
            req.cancelled = True
            raise

    async def stream(self, prompt_ids: Sequence[int], params: SamplingParams, request_id: str = "",
                     timeout: float | None = None) -> AsyncIterator[str | GenerationResult]:
        """Yields text deltas, then the final GenerationResult. Closing the iterator cancels the request."""
        req = self.submit(prompt_ids, params, request_id, stream=True)
        async for item in self.iter_stream(req, timeout):
            yield item

    async def iter_stream(self, req: _Request, timeout: float | None = None
                          ) -> AsyncIterator[str | GenerationResult]:
        """Iterate a request submitted with `submit(..., stream=True)` (submit first, so 429 comes before a
        streaming answer has begun)."""
        assert req.stream is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                try:
                    item = await asyncio.wait_for(req.stream.get(), left)
                except TimeoutError as e:
                    raise GenerationTimeout(f"generation did not finish within {timeout:g}s") from e
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, GenerationResult):
                    return
        finally:
            if not req.future.done():
                req.cancelled = True

    def cancel(self, req: _Request) -> None:
        """Stop working on a request (client gone, sibling prompt rejected)."""
        req.cancelled = True

    # ------------------------------------------------------------------------------------ batching
    async def _batcher(self) -> None:
        assert self._queue is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        while True:
            batch, self._held = self._held[: self.max_batch_size], self._held[self.max_batch_size:]
            while not self._inbox.empty() and len(batch) < self.max_batch_size:  # left over from last batch
                batch.append(self._inbox.get_nowait())
            if not batch:
                batch.append(await self._queue.get())
            deadline = loop.time() + self.batch_wait
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            batch = [r for r in batch if not r.cancelled]
            if not batch:
                continue
            self.running_batch = len(batch)
            run = loop.run_in_executor(self._executor, self._run_batch, batch)
            try:
                await self._feed_running(run)
            except Exception as e:  # keep serving: fail this batch's requests, not the worker
                log.exception("generation batch failed")
                for r in {id(x): x for x in [*batch, *self._touched]}.values():  # joined ones too
                    r.deliver(EngineError(f"generation failed: {e}"))
            finally:
                self.running_batch = 0
                self.batches_run += 1

    async def _feed_running(self, run: asyncio.Future) -> None:
        """While a batch runs, pass arrivals to it through the thread-safe inbox (it admits them between
        decode steps while it has room; what it leaves starts the next batch)."""
        assert self._queue is not None
        while not run.done():
            if self._inbox.qsize() >= self.max_batch_size:  # running batch is not taking more: just wait
                await asyncio.wait({run})
                break
            getter = asyncio.ensure_future(self._queue.get())
            try:
                await asyncio.wait({run, getter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if getter.done() and not getter.cancelled():
                    self._inbox.put(getter.result())
                else:  # a cancelled Queue.get leaves its item in the queue
                    getter.cancel()
        run.result()

    # ------------------------------------------------------------------------------------ decode loop
    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)  # sliding-window layers (Gemma 3) like generate
        except TypeError:
            return DynamicCache()

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         logits_to_keep=1, **{self._cache_kw: cache})
        return out.logits[:, -1, :]

    def _pick(self, logits: torch.Tensor, reqs: list[_Request]) -> list[int]:
        """Greedy rows: argmax (what `generate(do_sample=False)` does); sampled rows: temperature, top_p and
        the request's own seeded generator, so a seeded request gives the same text whatever its batch."""
        greedy = logits.argmax(dim=-1).tolist()
        for i, r in enumerate(reqs):
            p = r.params
            if p.temperature <= 0:
                continue
            probs = torch.softmax(logits[i].float() / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sp, si = probs.sort(descending=True)
                cum = sp.cumsum(0)
                sp[(cum - sp) > p.top_p] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, si, sp)
            if r.generator is None:
                r.generator = torch.Generator(device="cpu")
                r.generator.manual_seed(p.seed if p.seed is not None else random.getrandbits(63))
            greedy[i] = int(torch.multinomial(probs.cpu(), 1, generator=r.generator).item())
        return greedy

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _advance(self, r: _Request, tok: int) -> GenerationResult | None:
        """Append one token; return the result when the request is finished (EOS, stop string, max_tokens)."""
        r.out_ids.append(tok)
        n_prompt = len(r.prompt_ids)
        if tok in self.eos_ids:
            text = self._decode(r.out_ids[:-1])
            self._emit(r, text, final=True)
            return GenerationResult(text, r.out_ids, "stop", n_prompt, tok)
        text = self._decode(r.out_ids)
        stops = r.params.stop
        if stops:
            hits = [(k, s) for s in stops if s and (k := text.find(s)) != -1]
            if hits:
                k, s = min(hits)
                self._emit(r, text[:k], final=True)
                return GenerationResult(text[:k], r.out_ids, "stop", n_prompt, s)
        if len(r.out_ids) >= r.params.max_tokens:
            self._emit(r, text, final=True)
            return GenerationResult(text, r.out_ids, "length", n_prompt, None)
        self._emit(r, text, final=False)
        return None

    def _emit(self, r: _Request, text: str, *, final: bool) -> None:
        """Stream the part of `text` that can no longer change: hold back a possible stop-string prefix and an
        unfinished UTF-8 sequence (decoded as U+FFFD)."""
        if r.stream is None:
            return
        safe = len(text)
        if not final:
            hold = max((len(s) - 1 for s in r.params.stop), default=0)
            safe = max(len(text) - hold, 0)
            while safe > 0 and text[safe - 1] == "\ufffd":
                safe -= 1
        if safe > r.emitted:
            r.push_delta(text[r.emitted:safe])
            r.emitted = safe

    def _prefill(self, reqs: list[_Request]) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded prefill exactly as `generate` builds it. Returns (cache, mask, last_pos, logits)."""
        width = max(len(r.prompt_ids) for r in reqs)
        ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for i, r in enumerate(reqs):
            n = len(r.prompt_ids)
            ids[i, width - n:] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, width - n:] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        cache = self._new_cache()
        logits = self._forward(ids, mask, pos, cache)
        return cache, mask, pos[:, -1], logits

    @staticmethod
    def _mergeable(cache: Any, length: int) -> bool:
        """Joining needs plain per-token KV layers: dynamic layers, or sliding-window layers that have not
        started dropping tokens yet (then keys hold exactly `cumulative_length` positions)."""
        from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

        layers = getattr(cache, "layers", None)
        if not layers:
            return False
        for layer in layers:
            if type(layer) is DynamicSlidingWindowLayer:
                if length + 2 >= layer.sliding_window:
                    return False
            elif type(layer) is not DynamicLayer:
                return False
            if not layer.is_initialized or layer.keys.shape[-2] != length:
                return False
        return True

    def _merge(self, a: tuple, b: tuple) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concatenate two (cache, mask, last_pos, logits) states on the batch axis, left-padding the shorter
        one with masked zeros (what a left-padded batch holds anyway)."""
        (ca, ma, pa, la), (cb, mb, pb, lb) = a, b
        length = max(ma.shape[1], mb.shape[1])

        def pad(t: torch.Tensor, n: int, dim_from_end: int) -> torch.Tensor:
            if n == 0:
                return t
            spec = [0, 0] * (dim_from_end - 1) + [n, 0]
            return torch.nn.functional.pad(t, spec)

        for la_, lb_ in zip(ca.layers, cb.layers, strict=True):
            na, nb = length - la_.keys.shape[-2], length - lb_.keys.shape[-2]
            la_.keys = torch.cat([pad(la_.keys, na, 2), pad(lb_.keys, nb, 2)])
            la_.values = torch.cat([pad(la_.values, na, 2), pad(lb_.values, nb, 2)])
            if hasattr(la_, "cumulative_length"):
                la_.cumulative_length = length
        mask = torch.cat([pad(ma, length - ma.shape[1], 1), pad(mb, length - mb.shape[1], 1)])
        return ca, mask, torch.cat([pa, pb]), torch.cat([la, lb])

    def _admit(self, active: list[_Request], state: tuple) -> tuple:
        """Prefill requests waiting in the inbox and merge them into the running batch while there is room
        and the merged length stays inside every sliding window; others wait for the next batch."""
        room = self.max_batch_size - len(active)
        length = state[1].shape[1]
        if room <= 0 or self._inbox.empty() or not self._mergeable(state[0], length):
            return state
        window = min((getattr(x, "sliding_window", 1 << 30) for x in state[0].layers), default=1 << 30)
        new: list[_Request] = []
        while len(new) < room:
            try:
                r = self._inbox.get_nowait()
            except queue.Empty:
                break
            if r.cancelled:
                continue
            if len(r.prompt_ids) + 2 >= window:
                self._held.append(r)
                break
            new.append(r)
        if not new:
            return state
        if self.metrics is not None:
            now = time.perf_counter()
            self.metrics.observe_batch([now - r.enqueued for r in new], new_batch=False)
        active.extend(new)
        log.debug("admitting %d request(s) into a running batch of %d", len(new), len(active) - len(new))
        fresh = self._prefill(new)
        self.running_batch = len(active)
        return self._merge(state, fresh)

    @torch.inference_mode()
    def _run_batch(self, batch: list[_Request]) -> None:
        t0 = time.perf_counter()
        if self.metrics is not None:
            self.metrics.observe_batch([t0 - r.enqueued for r in batch], new_batch=True)
        active = list(batch)
        self._touched = active
        cache, mask, last_pos, logits = self._prefill(active)
        steps = 0
        while active:
            cache, mask, last_pos, logits = self._admit(active, (cache, mask, last_pos, logits))
            if self.metrics is not None:
                self.metrics.observe_step(len(active))
            toks = self._pick(logits, active)
            steps += 1
            keep: list[int] = []
            for i, (r, tok) in enumerate(zip(active, toks, strict=True)):
                if r.cancelled:
                    text = self._decode(r.out_ids)
                    r.deliver(GenerationResult(text, r.out_ids, "abort", len(r.prompt_ids)))
                    continue
                res = self._advance(r, tok)
                if res is None:
                    keep.append(i)
                else:
                    r.deliver(res)
                    if self.metrics is not None:
                        self.metrics.observe_done(res.prompt_tokens, res.completion_tokens)
            if not keep:
                break
            next_ids = torch.tensor([toks[i] for i in keep], dtype=torch.long, device=self.device)[:, None]
            if len(keep) < len(active):  # drop finished rows: they cost nothing from here on
                idx = torch.tensor(keep, dtype=torch.long, device=self.device)
                cache.batch_select_indices(idx)
                mask, last_pos = mask[idx], last_pos[idx]
                active[:] = [active[i] for i in keep]
                self.running_batch = len(active)
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            last_pos = last_pos + 1
            logits = self._forward(next_ids, mask, last_pos[:, None], cache)
        if self.metrics is not None:
            self.metrics.observe_batch_time(time.perf_counter() - t0, steps)
        log.debug("batch of %d done in %.3fs (%d steps)", len(batch), time.perf_counter() - t0, steps)


__all__ = [
    "Engine", "EngineError", "EngineNotRunning", "GenerationResult", "GenerationTimeout", "QueueFull",
    "SamplingParams",
]
