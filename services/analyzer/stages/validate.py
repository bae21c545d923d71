"""The validation stage: dev-split accuracy through the generation worker, and what `auto` serves (bridgex.serving)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bridgex.demos import ordered_words
from bridgex.generation.client import GenerationError
from bridgex.models import LoadedModel
from bridgex.serving import SequentialDesign, choose, incumbent_for, validation_conditions

from services.analyzer.config import AnalyzerSettings
from services.analyzer.stages.common import measurer, measuring_concurrency, measuring_engine
from services.analyzer.stages.context import AnalysisFailed, JobContext
from services.analyzer.stages.probes import worker_check
from services.analyzer.validation import DevValidation, ValidationFailed, dev_words, validate_on_dev
from services.common.analysis import AnalysisSpec

log = logging.getLogger(__name__)


def validate(
    ranking: dict[str, Any],
    spec: AnalysisSpec,
    settings: AnalyzerSettings,
    ctx: JobContext,
    lm: LoadedModel | None = None,
    kept: list[str] | None = None,
) -> dict[str, Any]:
    """Measure the dev split and decide what `auto` serves (bridgex.serving). Returns {"served", "validation"}.

    Only the "validated" policy measures (bridgex.serving's sequential paired test against the incumbent, on up
    to dev_max dev words); "hsic" serves the argmax as the paper. Too few dev words: nothing is measured and
    "validated" serves none (it cannot show a bridge is not worse than no bridge)."""

    src, tgt, policy = spec.source, spec.target, spec.serve_policy
    order = [
        c["code"]
        for c in sorted(ranking.get("ranked", []), key=lambda c: c.get("rank", 0))
        if c.get("score") is not None
    ]
    info: dict[str, Any] = {"policy": policy, "k_shot": int(spec.k_shot or 0)}
    result = None
    if policy == "validated":
        dev_max = max(int(spec.dev_max or settings.dev_max), int(spec.dev_size or settings.dev_size))
        try:
            words = dev_words(str(settings.data_path), src, tgt, dev_max)
        except FileNotFoundError:
            words = []
        info["dev_words"] = len(words)
        if len(words) < int(spec.dev_min or settings.dev_min):
            info["skipped"] = f"only {len(words)} dev words (dev_min {spec.dev_min})"
        else:
            incumbent = incumbent_for(src, tgt, spec.serve_incumbent)
            conditions = validation_conditions(order, int(spec.validate_top_m or 2), src, tgt, spec.serve_incumbent)
            design = SequentialDesign.doubling(
                int(spec.dev_size or settings.dev_size), dev_max, len(words), alpha=float(spec.serve_alpha)
            )
            identity = None
            if lm is not None:
                info["worker_weights"], identity = worker_check(settings, lm, "dev validation")
            engine = info["engine"] = measuring_engine(settings, lm, identity)
            where = "local" if engine == "local" else ",".join(settings.worker_endpoints)
            memo_key = f"{where}|{lm.weight_hash if lm is not None else spec.model}"

            async def go() -> DevValidation:
                async with measurer(settings, lm, engine) as client:
                    return await validate_on_dev(
                        client,
                        words,
                        src,
                        tgt,
                        conditions,
                        incumbent,
                        design,
                        data_root=str(settings.data_path),
                        k_shot=info["k_shot"],
                        demo_order=ordered_words(str(settings.data_path), src, tgt, spec.demo_choice, kept or ()),
                        demo_choice=spec.demo_choice,
                        hsic_order=order,
                        concurrency=measuring_concurrency(settings, engine),
                        screen_tokens=settings.screen_tokens,
                        memo_key=memo_key,
                        progress=lambda cur, tot: ctx.progress("validate", cur, tot),
                        check=lambda: ctx.check("validation"),
                    )

            try:
                result = asyncio.run(go())
            except (GenerationError, ValidationFailed) as e:
                who = "the analyzer's own model" if engine == "local" else f"the generation worker at {where}"
                fix = "set BRIDGEX_MEASURE_ENGINE=worker" if engine == "local" else "start the worker"
                raise AnalysisFailed(
                    f"the dev validation could not use {who} ({type(e).__name__}: {e}); {fix}, or submit with "
                    "serve_policy=hsic"
                ) from e
            info.update(
                {
                    "conditions": conditions,
                    "incumbent": result.decision.incumbent,
                    "notes": result.notes,
                    "scores": {c: v.model_dump(mode="json") for c, v in result.scores.items()},
                    "decision": result.decision.model_dump(mode="json"),
                }
            )
    ctx.progress("validate", 1, 1, force=True)
    served = choose(
        policy,
        order,
        result.decision if result is not None else None,
        demo_words=result.demo_words if result is not None else None,
        demo_choice=spec.demo_choice if result is not None else None,
    )
    return {"served": served.model_dump(mode="json"), "validation": info}
