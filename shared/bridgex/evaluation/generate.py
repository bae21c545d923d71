"""Cached, bounded-concurrency generation through the project's one client.

Every request the harness makes goes through here: deduplicated by request key, answered from the JSONL cache
when already done, else sent with at most `concurrency` requests in flight (enough for the worker to batch,
few enough not to overflow its queue). Deterministic rejections (4xx: prompt too long, ...) are cached as
empty answers so a rerun does not repeat them; transient failures are not cached, so a rerun retries them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bridgex.evaluation.cache import GenerationCache, request_key
from bridgex.generation.client import GenerationClient, GenerationFailed, GenerationRejected, WorkerUnavailable

__all__ = ["GenStats", "Generator", "Request"]


@dataclass(frozen=True)
class Request:
    prompt: str
    max_tokens: int

    def key(self, model: str) -> str:
        return request_key(model, self.prompt, self.max_tokens, ("\n",))


@dataclass
class GenStats:
    sent: int = 0
    cached: int = 0
    rejected: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "sent": self.sent,
            "cached": self.cached,
            "rejected": self.rejected,
            "failed": self.failed,
            "errors": self.errors[:20],
        }


class Generator:
    """Runs batches of `Request`s; results are raw completion texts keyed by request key."""

    def __init__(
        self,
        client: GenerationClient,
        cache: GenerationCache,
        model: str,
        *,
        concurrency: int = 8,
        progress: bool = True,
    ) -> None:
        self.client, self.cache, self.model = client, cache, model
        self.concurrency = max(1, concurrency)
        self.progress = progress
        self.stats = GenStats()

    def text(self, req: Request) -> str:
        """Completion text of a request already run ("" when it failed)."""
        return self.cache.get(req.key(self.model)) or ""

    def done(self, req: Request) -> bool:
        """True when the request has an answer (a transient failure leaves it undone until a rerun)."""
        return req.key(self.model) in self.cache

    async def run(self, requests: list[Request], desc: str) -> None:
        """Generate every request not in the cache; raises WorkerUnavailable when the worker is gone."""
        todo: dict[str, Request] = {}
        for r in requests:
            k = r.key(self.model)
            if k in self.cache or k in todo:
                continue
            todo[k] = r
        self.stats.cached += len({r.key(self.model) for r in requests}) - len(todo)
        if not todo:
            return
        sem = asyncio.Semaphore(self.concurrency)

        async def one(key: str, req: Request) -> None:
            async with sem:
                self.stats.sent += 1
                try:
                    c = await self.client.complete(req.prompt, max_tokens=req.max_tokens, temperature=0.0, stop=("\n",))
                except GenerationRejected as e:
                    self.stats.rejected += 1
                    self.stats.errors.append(f"rejected ({e.status}): {e.message}"[:300])
                    self.cache.put(
                        key, model=self.model, prompt=req.prompt, text="", finish_reason=f"rejected:{e.status}"
                    )
                    return
                except WorkerUnavailable:
                    raise
                except GenerationFailed as e:
                    self.stats.failed += 1
                    self.stats.errors.append(f"failed: {e}"[:300])
                    return
                self.cache.put(key, model=self.model, prompt=req.prompt, text=c.text, finish_reason=c.finish_reason)

        bar = _bar(len(todo), desc, self.progress)
        tasks = [asyncio.create_task(one(k, r)) for k, r in todo.items()]
        try:
            for fut in asyncio.as_completed(tasks):
                await fut
                bar.update(1)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            bar.close()


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="req", disable=not enabled, dynamic_ncols=True, leave=False)
