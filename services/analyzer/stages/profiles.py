"""The profile stage: one LanguageProfile per language and model, reused from disk when inputs match."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bridgex import artifacts, pipeline
from bridgex.languages import normalize_code
from bridgex.models import LoadedModel
from bridgex.profiling import LanguageProfile
from filelock import FileLock, Timeout

from services.analyzer.config import AnalyzerSettings
from services.analyzer.stages.common import _short, data_layout, load_lm, model_root
from services.analyzer.stages.context import AnalysisFailed, JobContext

log = logging.getLogger(__name__)


def monolingual(settings: AnalyzerSettings, language: str) -> list[str]:
    try:
        texts = list(data_layout(settings).monolingual(language))
    except FileNotFoundError as e:
        raise AnalysisFailed(
            f"no monolingual text for {language!r} under {settings.data_path} ({e}); run "
            f"`bridgex data prepare` or add the text file, or drop {language!r} from the candidates"
        ) from e
    if not any(t.strip() for t in texts):
        raise AnalysisFailed(f"the monolingual text of {language!r} under {settings.data_path} is empty")
    return texts


def profile_language(
    lm: LoadedModel,
    language: str,
    settings: AnalyzerSettings,
    ctx: JobContext | None = None,
    *,
    sub: tuple[int, int] = (0, 1),
    force: bool = False,
) -> LanguageProfile:
    """The LanguageProfile of `language` for `lm`: reused from disk when model weights, text and parameters
    match, else computed (cancel checked between batches) and written atomically."""

    ctx = ctx or JobContext(settings=settings)
    texts = monolingual(settings, language)
    params = {"chunk_tokens": settings.chunk_tokens, "max_tokens": settings.profile_max_tokens}
    folder = model_root(settings, lm) / "profiles" / _short(params)
    dhash = artifacts.sha256_texts(texts)
    name = artifacts.profile_name(language)

    def reuse() -> LanguageProfile | None:
        try:
            prof = artifacts.load_profile(folder, name)
        except (FileNotFoundError, artifacts.ArtifactError, KeyError, ValueError):
            return None
        meta = prof.meta or {}
        if meta.get("data_hash") == dhash and meta.get("weight_hash") == lm.weight_hash:
            ctx.progress("profile", 1, 1, sub=sub)
            return prof
        return None

    if not force and (prof := reuse()) is not None:
        return prof
    with computing(folder / f".{name}.lock", ctx, f"the profile of {language!r}"):
        if not force and (prof := reuse()) is not None:  # another analyzer computed it while this one waited
            return prof
        pipeline.profile_language(
            lm,
            texts,
            language,
            settings,
            folder,
            progress=lambda cur, tot: ctx.progress("profile", cur, tot, sub=sub),
            should_cancel=ctx.should_cancel,
            name=name,
        )
    return artifacts.load_profile(folder, name)


@contextmanager
def computing(lock_path: Path, ctx: JobContext, what: str) -> Iterator[None]:
    """One process at a time computes a shared artifact: analyzers on one queue start on pairs that share
    languages (the candidates are in every pair), and the second one to need a profile waits for the first's and
    reuses it instead of computing the same profile beside it. The wait checks for a cancel or shutdown every
    second. An advisory file lock beside the artifact: the kernel frees it when its holder dies; where the storage
    does not share locks between hosts the two compute it twice, as before (the artifact is written atomically)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    waited = False
    while True:
        try:
            lock.acquire(timeout=1.0)
            break
        except Timeout:
            if not waited:
                log.info("%s is being computed by another analyzer: waiting to reuse it", what)
                waited = True
            ctx.check(f"waiting for {what}")
    try:
        yield
    finally:
        lock.release()


def profile_one(language: str, settings: AnalyzerSettings, *, force: bool = False) -> dict[str, Any]:
    """Task body of `bridgex.profile_language`."""

    lm = load_lm(settings)
    code = normalize_code(language)
    prof = profile_language(lm, code, settings, force=force)
    return {"language": code, "n_tokens": prof.n_tokens, "model": lm.model_id, "revision": lm.revision}
