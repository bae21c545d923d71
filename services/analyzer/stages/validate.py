"""The validation stage: dev-split accuracy through the generation worker, and what `auto` serves (bridgex.serving)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bridgex.generation.client import GenerationError
from bridgex.models import LoadedModel
from bridgex.serving import DevScore, choose, validation_conditions

from services.analyzer.config import AnalyzerSettings
from services.analyzer.stages.common import measuring_client
from services.analyzer.stages.context import AnalysisFailed, JobContext
from services.analyzer.stages.probes import check_worker_weights
from services.analyzer.validation import ValidationFailed, dev_words, measure
from services.common.analysis import AnalysisSpec

log = logging.getLogger(__name__)


def validate(
    ranking: dict[str, Any],
    spec: AnalysisSpec,
    settings: AnalyzerSettings,
    ctx: JobContext,
    lm: LoadedModel | None = None,
) -> dict[str, Any]:
    """Measure the dev split and decide what `auto` serves (bridgex.serving). Returns {"served", "validation"}.

    Only the "validated" policy measures; "hsic" serves the argmax as the paper. Too few dev words: nothing is
    measured and "validated" serves none (it cannot show a bridge is not worse than no bridge)."""

    src, tgt, policy = spec.source, spec.target, spec.serve_policy
    order = [
        c["code"]
        for c in sorted(ranking.get("ranked", []), key=lambda c: c.get("rank", 0))
        if c.get("score") is not None
    ]
    info: dict[str, Any] = {"policy": policy, "k_shot": int(spec.k_shot or 0)}
    dev = None
    if policy == "validated":
        try:
            words = dev_words(str(settings.data_path), src, tgt, int(spec.dev_size or settings.dev_size))
        except FileNotFoundError:
            words = []
        info["dev_words"] = len(words)
        if len(words) < int(spec.dev_min or settings.dev_min):
            info["skipped"] = f"only {len(words)} dev words (dev_min {spec.dev_min})"
        else:
            conditions = validation_conditions(order, int(spec.validate_top_m or 2), src, tgt)
            if lm is not None:
                info["worker_weights"] = check_worker_weights(settings, lm, "dev validation")

            async def go() -> tuple[dict[str, DevScore], dict[str, Any]]:
                async with measuring_client(settings) as client:
                    return await measure(
                        client,
                        words,
                        src,
                        tgt,
                        conditions,
                        data_root=str(settings.data_path),
                        k_shot=info["k_shot"],
                        concurrency=settings.gold_filter_concurrency,
                        progress=lambda cur, tot: ctx.progress("validate", cur, tot),
                        check=lambda: ctx.check("validation"),
                    )

            try:
                dev, notes = asyncio.run(go())
            except (GenerationError, ValidationFailed) as e:
                raise AnalysisFailed(
                    f"the dev validation could not use the generation worker at {settings.worker_url} "
                    f"({type(e).__name__}: {e}); start the worker, or submit with serve_policy=hsic"
                ) from e
            info.update(
                {
                    "conditions": conditions,
                    "notes": notes,
                    "scores": {c: v.model_dump(mode="json") for c, v in dev.items()},
                }
            )
    ctx.progress("validate", 1, 1, force=True)
    served = choose(policy, order, dev, margin=int(spec.serve_margin or 1))
    return {"served": served.model_dump(mode="json"), "validation": info}
