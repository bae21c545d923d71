"""Worker test fixtures: the tiny random Llama loaded once per module (fp32 CPU, like the worker in tests)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir: Path):
    from bridgex.models import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")
