"""Who answers the gold filter and the dev validation: the analyzer's own model only where its greedy answers are the
served model's (the worker reported the same weights, both in float32); the worker otherwise."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch
from bridgex.generation.client import GenerationClient
from bridgex.generation.local import LocalEngine

from services.analyzer.config import AnalyzerSettings
from services.analyzer.stages.common import measurer, measuring_concurrency, measuring_engine

VERIFIED = {"model_id": "m", "revision": "r", "weight_hash": "h", "dtype": "float32"}


def lm(dtype: torch.dtype = torch.float32) -> SimpleNamespace:
    return SimpleNamespace(model=SimpleNamespace(dtype=dtype), tokenizer=None, model_id="m")


@pytest.mark.parametrize(
    ("engine", "model", "identity", "expected"),
    [
        ("local", lm(), VERIFIED, "local"),
        ("worker", lm(), VERIFIED, "worker"),
        ("local", lm(), None, "worker"),  # unverified or unreachable worker: the served model is not known
        ("local", lm(), {**VERIFIED, "dtype": None}, "worker"),  # a worker that does not say its dtype
        ("local", lm(torch.bfloat16), VERIFIED, "worker"),  # the analyzer loaded another dtype
        ("local", lm(torch.bfloat16), {**VERIFIED, "dtype": "bfloat16"}, "worker"),  # 16-bit: ties flip
        ("local", None, VERIFIED, "worker"),
    ],
)
def test_the_local_engine_only_where_it_decodes_the_served_model(engine, model, identity, expected) -> None:
    settings = AnalyzerSettings(measure_engine=engine, _env_file=None)
    assert measuring_engine(settings, model, identity) == expected


def test_each_engine_gets_its_client_and_concurrency() -> None:
    settings = AnalyzerSettings(local_batch=96, gold_filter_concurrency=12, _env_file=None)
    assert (measuring_concurrency(settings, "local"), measuring_concurrency(settings, "worker")) == (96, 12)
    fake = SimpleNamespace(model=torch.nn.Linear(2, 2), tokenizer=SimpleNamespace(eos_token_id=1, pad_token_id=0))
    fake.model_id = "m"

    async def go() -> tuple[type, type]:
        async with measurer(settings, fake, "local") as a, measurer(settings, fake, "worker") as b:
            return type(a), type(b)

    assert asyncio.run(go()) == (LocalEngine, GenerationClient)
