"""The gateway's start-up warm-up of the generation worker (services.api.main.warm_worker), in isolation: it keeps
trying while the worker is still starting, so the first user's translation does not pay vLLM's logprobs set-up."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from bridgex.generation.client import GenerationRejected

from services.api.main import warm_worker


class _StartingWorker:
    """Refuses `down` calls (a worker still loading), then answers."""

    def __init__(self, down: int, refusal: int | None = None) -> None:
        self.down, self.refusal, self.calls = down, refusal, []

    async def complete(self, prompt: str, **kw: Any) -> str:
        self.calls.append(kw)
        if len(self.calls) <= self.down:
            if self.refusal is not None:
                raise GenerationRejected(self.refusal, "refused")
            raise ConnectionError("connection refused")
        return "ok"


def test_retries_until_the_worker_answers() -> None:
    gen = _StartingWorker(down=3)
    assert asyncio.run(warm_worker(SimpleNamespace(generation=gen), every_s=0.01, within_s=5)) is True
    assert len(gen.calls) == 4 and all(c.get("logprobs") for c in gen.calls)


def test_gives_up_at_its_deadline() -> None:
    gen = _StartingWorker(down=10**6)
    assert asyncio.run(warm_worker(SimpleNamespace(generation=gen), every_s=0.01, within_s=0.05)) is False
    assert 2 <= len(gen.calls) <= 7


def test_a_refusal_ends_it_but_a_busy_worker_is_asked_again() -> None:
    wrong_key = _StartingWorker(down=10**6, refusal=401)
    assert asyncio.run(warm_worker(SimpleNamespace(generation=wrong_key), every_s=0.01, within_s=5)) is False
    assert len(wrong_key.calls) == 1
    busy = _StartingWorker(down=2, refusal=429)
    assert asyncio.run(warm_worker(SimpleNamespace(generation=busy), every_s=0.01, within_s=5)) is True
    assert len(busy.calls) == 3
