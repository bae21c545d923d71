"""Analysis requests: validation, the content-hash job id, and submission to the `analyze` queue exactly once.

Shared by the gateway (`POST /analyze`) and anything else that enqueues work (CLI, tests).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import redis
from bridgex import METHOD_VERSION
from bridgex.data.layout import DataLayout
from bridgex.demos import demo_pairs
from bridgex.fingerprint import canonical_json, config_fingerprint, job_id
from bridgex.languages import PAPER_LANGUAGES, UnknownLanguageError, normalize_code
from pydantic import BaseModel, Field, field_validator, model_validator

from .config import ServiceSettings
from .jobs import JobRecord, JobState, JobStore

if TYPE_CHECKING:
    from celery import Celery

TASK_NAME = "bridgex.analyze_pair"
RERUNNABLE = frozenset({JobState.failed, JobState.cancelled})


SPEC_SETTINGS: dict[str, str] = {
    "model": "model",
    "revision": "model_revision",
    "candidates": "candidates",
    "selection": "selection",
    "bridge_set": "bridge_set",
    "k": "bridge_k",
    "window": "window",
    "top_rate": "top_rate",
    "reduce": "probe_reduce",
    "gold_filter": "gold_filter",
    "probe_max": "probe_max",
    "probe_min": "probe_min",
    "hsic_variant": "hsic_variant",
    "gold_filter_k": "gold_filter_k",
    "probe_fallback": "probe_fallback",
    "lape_languages": "lape_languages",
    "lape_ratio": "lape_ratio",
    "lape_quantile": "lape_quantile",
    "full_fraction": "full_fraction",
    "serve_policy": "serve_policy",
    "validate_top_m": "validate_top_m",
    "serve_incumbent": "serve_incumbent",
    "serve_alpha": "serve_alpha",
    "dev_size": "dev_size",
    "dev_max": "dev_max",
    "demo_choice": "demo_choice",
    "dev_min": "dev_min",
    "k_shot": "k_shot",
    "capture_backend": "capture_backend",
    "batch_size": "batch_size",
    "chunk_tokens": "chunk_tokens",
    "profile_max_tokens": "profile_max_tokens",
}
"""The method parameters among the settings: AnalysisSpec field -> the settings field it defaults to (a request
field of the same name overrides it). `normalized()` is built from this, so every one of them is in the job id,
and all but the key fields (bridgex.fingerprint.NOT_METHOD_PARAMS) in the configuration fingerprint. The spec's
other fields: `source` and `target` (the request's), `method_version` (the code's)."""

NOT_METHOD_SETTINGS: dict[str, str] = {
    # where things are, and how processes talk: no effect on what an analysis computes
    "log_level": "logging only",
    "home": "where caches live (artifacts are reused by content, not by place)",
    "cache_dir": "where caches live",
    "artifacts_dir": "where artifacts are written",
    "data_dir": "where the data is: the data hash covers the files the analysis reads (path included)",
    "data_auto": "whether missing data is gathered: the data hash covers what was there",
    "worker_url": "where the generation worker is (its weights are checked against the analysis' own)",
    "worker_urls": "where the generation workers are (their weights are checked against the analysis' own)",
    "allow_unverified_worker": "whether a worker that does not report its weights is accepted at all",
    "worker_api_key": "a credential",
    "worker_timeout_s": "a timeout",
    "worker_retries": "retries of failed requests",
    "served_model_name": "the worker's name for the model",
    "redis_url": "Redis",
    "broker_url": "Redis",
    "result_backend": "Redis",
    "redis_password": "a credential",
    "analyze_queue": "the Celery queue",
    "visibility_timeout_s": "redelivery of lost jobs",
    "job_ttl_s": "how long job records live",
    "analyze_max_candidates": "a bound checked at submission (a request over it is refused, not changed)",
    "analysis_retry_base_s": "when auto retries a failed analysis",
    "analysis_retry_max_s": "when auto retries a failed analysis",
    "models_kept": "models kept loaded in memory",
    "job_lease_s": "the lease that keeps one worker per job",
    "analyzer_nice": "the analyzer's CPU priority",
    # how fast, not what: same requests, same results
    "gold_filter_concurrency": "requests in flight; the gold filter judges in dictionary order whatever the "
    "concurrency, and the dev validation measures the same words",
    "gold_filter_timeout_s": "a timeout",
    "screen_tokens": "a verdict from the first tokens is the whole decode's (bridgex.prompts.parse_word_partial)",
    "measure_engine": "the analyzer's own copy of the served weights in float32, used only where the worker reports "
    "them; its greedy answers are the worker's (docs/results.md run 16: 512 of 512, identical dev outcomes)",
    "local_batch": "requests per batch of the local engine; each row computes what it would alone",
    "capture_tensor_parallel": "vLLM capture: the same model split over GPUs",
    "worker_kv_cache_gib": "vLLM memory (KV cache); probe prompts are short",
    "worker_cpu_bind": "vLLM CPU threads",
    "max_model_len": "vLLM's longest sequence; a longer chunk or prompt fails instead of being cut",
    # known gap: precision. 'auto' resolves on the analyzer's hardware (float32 on CPU, bfloat16 on CUDA), which
    # the gateway cannot see, so it is not fingerprinted; one deployment runs one device and dtype
    "device": "the analyzer's hardware (known gap: 'auto' dtype follows it; one deployment, one device)",
    "dtype": "the loaded model's precision (known gap: 'auto' follows the device; one deployment, one dtype)",
}
"""Settings fields declared as not changing any artifact (with why). tests/analyzer/test_common.py fails on any
settings field the analyzer reads that is in neither SPEC_SETTINGS nor here."""


def spec_fields() -> list[str]:
    """The fields of AnalysisSpec (the normalised request's keys), in order."""
    return [f.name for f in fields(AnalysisSpec) if f.name != "extra"]


class InvalidAnalysisRequest(ValueError):
    """Bad input a person can fix (the gateway maps it to 422)."""


class AnalysisRequest(BaseModel):
    """One pair to analyse. Fields left as None take the server's ServiceSettings (method.md DECISIONs)."""

    source: str = Field(..., max_length=64, description="Source language code (e.g. 'sw').")
    target: str = Field(..., max_length=64, description="Target language code (e.g. 'fi').")
    candidates: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None,
        max_length=64,
        description="Candidate bridges; default settings.candidates (at most "
        "analyze_max_candidates, each with monolingual text to profile).",
    )
    model: str | None = Field(None, max_length=512, description="Default settings.model (one model per analyzer).")
    revision: str | None = Field(None, max_length=128, description="Must be the served revision, if given.")
    selection: Literal["top_rate", "lape"] | None = None
    bridge_set: Literal["specific", "full"] | None = None
    k: int | None = Field(None, ge=1, le=4096, description="Neurons kept per bridge set and layer.")
    window: tuple[float, float] | None = Field(None, description="Depth window as fractions of the layers.")
    top_rate: float | None = Field(None, gt=0, lt=1)
    reduce: Literal["mean", "last"] | None = None
    gold_filter: bool | None = None
    probe_max: int | None = Field(None, ge=1, le=100_000)
    probe_min: int | None = Field(None, ge=1, le=100_000)
    hsic_variant: Literal["reference", "cka"] | None = None
    gold_filter_k: int | None = Field(None, ge=0, le=16, description="Demonstrations in gold-filter prompts.")
    probe_fallback: Literal["unfiltered", "fail"] | None = Field(
        None, description="Below probe_min kept words: rank on unfiltered probes (labelled), or fail."
    )
    serve_policy: Literal["validated", "hsic"] | None = Field(
        None, description="validated: the best on dev words, or none; hsic: the HSIC argmax (the paper)."
    )
    dev_size: int | None = Field(None, ge=1, le=5000, description="Dev words measured per condition.")

    @field_validator("window")
    @classmethod
    def _window(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (0.0 <= v[0] < v[1] <= 1.0):
            raise ValueError("window must be two fractions 0 <= lo < hi <= 1, e.g. [0.3125, 0.6875]")
        return v

    @model_validator(mode="after")
    def _probe_bounds(self) -> AnalysisRequest:
        if self.probe_max is not None and self.probe_min is not None and self.probe_min > self.probe_max:
            raise ValueError(f"probe_min ({self.probe_min}) must not exceed probe_max ({self.probe_max})")
        return self

    def normalized(self, settings: ServiceSettings) -> dict[str, Any]:
        """The canonical request: one key per AnalysisSpec field, codes normalised, each method parameter the
        request's or else its setting's (SPEC_SETTINGS). Raises InvalidAnalysisRequest (a ValueError) with a
        message a person can act on."""
        try:
            source = normalize_code(self.source)
            target = normalize_code(self.target)
            raw_cands = list(self.candidates if self.candidates is not None else settings.candidates)
            cands: list[str] = []
            for c in raw_cands:
                code = normalize_code(c)
                if code not in (source, target) and code not in cands:
                    cands.append(code)
        except UnknownLanguageError as e:
            raise InvalidAnalysisRequest(str(e)) from e
        if source == target:
            raise InvalidAnalysisRequest(f"source and target are the same language ({source!r})")
        if not cands:
            raise InvalidAnalysisRequest(
                f"no candidate bridge left once source {source!r} and target {target!r} are removed from "
                f"{raw_cands}; give at least one other language in 'candidates'"
            )
        if len(cands) > settings.analyze_max_candidates:
            raise InvalidAnalysisRequest(
                f"{len(cands)} candidates; at most {settings.analyze_max_candidates} per analysis "
                "(BRIDGEX_ANALYZE_MAX_CANDIDATES): each costs a profile of the language"
            )
        no_text = [c for c in cands if not _text_available(settings, c)]
        if no_text:
            raise InvalidAnalysisRequest(
                f"candidate(s) {no_text} have no monolingual text to profile: only the 15 paper languages' texts "
                f"are gathered automatically, others need {settings.data_path}/text/<code>.txt (`bridgex data "
                "prepare`). Drop them or add their text"
            )
        model = self.model or settings.model
        if self.model and self.model != settings.model:
            raise InvalidAnalysisRequest(f"this analyzer serves model {settings.model!r}; requested {self.model!r}")
        if self.revision is not None and self.revision != settings.model_revision:
            served = settings.model_revision or "its local weights (no hub revision)"
            raise InvalidAnalysisRequest(
                f"this analyzer serves {settings.model!r} at {served}; requested revision {self.revision!r}. "
                "Omit `revision` (one model and revision per deployment)"
            )
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        values = {name: given.get(name, getattr(settings, setting)) for name, setting in SPEC_SETTINGS.items()}
        if values["probe_min"] > values["probe_max"]:
            raise InvalidAnalysisRequest(
                f"probe_min ({values['probe_min']}) must not exceed probe_max ({values['probe_max']})"
            )
        values.update(
            model=model,
            source=source,
            target=target,
            candidates=cands,
            window=[float(values["window"][0]), float(values["window"][1])],
            lape_languages=[normalize_code(c) for c in values["lape_languages"]],
            method_version=METHOD_VERSION,
        )
        return {name: values[name] for name in spec_fields()}


@dataclass(frozen=True)
class AnalysisSpec:
    """A normalised analysis request (`AnalysisRequest.normalized`), typed: what every analyzer stage takes.

    The dict form stays the wire format (Celery's JSON, the job id, the configuration fingerprint); this is
    built from it at the analyzer's edge, so a stage cannot misspell a key or read a field that is not there.
    Fields an older queued job may lack keep the defaults below."""

    model: str
    revision: str | None
    source: str
    target: str
    candidates: tuple[str, ...]
    selection: Literal["top_rate", "lape"]
    bridge_set: Literal["specific", "full"]
    k: int
    window: tuple[float, float]
    top_rate: float
    reduce: Literal["mean", "last"]
    gold_filter: bool
    probe_max: int
    probe_min: int
    hsic_variant: Literal["reference", "cka"]
    gold_filter_k: int = 0
    probe_fallback: Literal["unfiltered", "fail"] = "unfiltered"
    lape_languages: tuple[str, ...] = ()
    lape_ratio: float | None = None
    lape_quantile: float | None = None
    full_fraction: float | None = None
    serve_policy: Literal["validated", "hsic"] = "validated"
    validate_top_m: int = 2
    serve_incumbent: Literal["none", "en"] = "none"
    serve_alpha: float = 0.05
    dev_size: int | None = None
    dev_max: int | None = None
    demo_choice: Literal["frequent", "direct", "kept"] = "frequent"
    dev_min: int | None = None
    k_shot: int = 0
    capture_backend: Literal["hf", "vllm"] | None = None
    batch_size: int | None = None
    chunk_tokens: int | None = None
    profile_max_tokens: int | None = None
    method_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Keys of the request this version does not know (kept, so the fingerprint is the submitter's)."""

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> AnalysisSpec:
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in request.items() if k in names}
        for key in ("candidates", "lape_languages"):
            if key in known:
                known[key] = tuple(known[key] or ())
        if "window" in known:
            known["window"] = (float(known["window"][0]), float(known["window"][1]))
        for key in ("gold_filter_k", "k_shot"):
            if known.get(key) is None:
                known.pop(key, None)
        return cls(**known, extra={k: v for k, v in request.items() if k not in names})

    def languages(self) -> list[str]:
        """Languages whose profiles the ranking needs: the pair, the candidates, and for LAPE its fixed set."""
        return analysis_languages(self.as_dict())

    def pairs(self) -> list[tuple[str, str]]:
        """Dictionaries the analysis reads: the pair (probes, dev words) and source->bridge for every bridge the
        dev validation may measure with demonstrations (the candidates, and English, which it always measures)."""
        return analysis_pairs(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """The wire form (lists, not tuples), equal to the normalised request it was built from."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(candidates=list(self.candidates), lape_languages=list(self.lape_languages), window=list(self.window))
        return {**out, **self.extra}


def analysis_languages(request: Mapping[str, Any]) -> list[str]:
    """AnalysisSpec.languages of a normalised request (also an older one that lacks some fields)."""
    source, target = request["source"], request["target"]
    langs = [source, target, *(request.get("candidates") or ())]
    if request.get("selection") == "lape":
        langs += list(request.get("lape_languages") or ())
    return list(dict.fromkeys(langs))


def analysis_pairs(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    """AnalysisSpec.pairs of a normalised request (also an older one that lacks some fields)."""
    source, target = request["source"], request["target"]
    bridges = [*(request.get("candidates") or ()), *(["en"] if "en" not in (source, target) else [])]
    return demo_pairs(source, target, list(dict.fromkeys(bridges)))


def _text_available(settings: ServiceSettings, code: str) -> bool:
    """A language the data stage can gather text for (a paper language), or whose text is already there."""
    return code in PAPER_LANGUAGES or DataLayout(settings.data_path).text_path(code).is_file()


_SERVED: dict[tuple[int, str, str], tuple[ServiceSettings, str]] = {}


def served_config(settings: ServiceSettings, source: str, target: str) -> str:
    """Fingerprint of the configuration `auto` serves for a pair: that of a default `POST /analyze` of the pair.
    Memoised per settings object (the gateway asks on every auto request)."""
    key = (id(settings), source, target)
    hit = _SERVED.get(key)
    if hit is not None and hit[0] is settings:
        return hit[1]
    fp = config_fingerprint(AnalysisRequest(source=source, target=target).normalized(settings))
    if len(_SERVED) > 8192:
        _SERVED.clear()
    _SERVED[key] = (settings, fp)
    return fp


def _data_files(layout: DataLayout, request: Mapping[str, Any]) -> list[Path]:
    """The files the pair's analysis reads (DataLayout's readers): the text of every language it profiles, and for
    every dictionary it reads (the pair, source->bridge for demonstrations) the pair's all.tsv and probe.tsv, or
    the reverse's all.tsv it is derived from when the pair has none. Not the manifest: other pairs' gathering
    rewrites it; its split parameters are hashed by content (`_split_params`)."""
    files = [layout.text_path(c) for c in analysis_languages(request)]
    for s, t in analysis_pairs(request):
        if layout.dictionary_path(s, t, "all").is_file():
            files += [layout.dictionary_path(s, t, "all"), layout.dictionary_path(s, t, "probe")]
        else:
            files.append(layout.dictionary_path(t, s, "all"))
    return files


_SPLITS: dict[Path, tuple[tuple[int, int], tuple[float, float, int]]] = {}


def _split_params(layout: DataLayout) -> tuple[float, float, int] | None:
    """The manifest's split parameters (eval, dev fraction, seed): read again only when the manifest changed."""
    try:
        st = os.stat(layout.manifest_path)
    except OSError:
        return None
    stamp = (st.st_size, st.st_mtime_ns)
    hit = _SPLITS.get(layout.manifest_path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        params = layout.split_params()
    except (OSError, ValueError):
        return None
    if len(_SPLITS) > 64:
        _SPLITS.clear()
    _SPLITS[layout.manifest_path] = (stamp, params)
    return params


def data_hash(settings: ServiceSettings, request: AnalysisSpec | Mapping[str, Any]) -> str:
    """Cheap fingerprint (path, size, mtime) of the data files a normalised request's analysis reads, and of the
    data directory's split parameters.

    Part of the job id: when `bridgex data prepare` rewrites a dictionary or a text this analysis reads, the same
    request is a new job; gathering another pair's data is not. Computed on every submit, so it stats a handful
    of files and reads none (the manifest only when it changed).
    """
    norm = request.as_dict() if isinstance(request, AnalysisSpec) else request
    layout = DataLayout(settings.data_path)
    entries: list[str] = [str(settings.data_path), f"splits:{_split_params(layout)}"]
    for f in _data_files(layout, norm):
        try:
            st = os.stat(f)
            entries.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            entries.append(f"{f}:missing")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def job_id_for(req: AnalysisRequest | dict[str, Any], settings: ServiceSettings, data_hash: str) -> str:
    """Job id = content hash of (model + revision, pair, candidates, method parameters, data hash)."""
    norm = req if isinstance(req, dict) else req.normalized(settings)
    return job_id({"request": norm, "data_hash": data_hash})


def alias_after_data(store: JobStore, settings: ServiceSettings, job_id: str, request: dict[str, Any]) -> str | None:
    """After a job's data stage gathered its files, the same request submitted again has a new data hash (the
    files exist now); alias that id to this job, so it stays one job. Returns the alias, if one was needed."""
    norm = {k: v for k, v in request.items() if k != "data_hash"}
    if not norm.get("source"):
        return None
    dh = data_hash(settings, norm)
    alias = job_id_for(norm, settings, dh)
    if alias == job_id:
        return None
    store.alias(alias, job_id)
    return alias


def submit_analysis(
    req: AnalysisRequest,
    *,
    settings: ServiceSettings,
    redis: redis.Redis,
    celery_app: Celery,
    request_id: str | None = None,
    force: bool = False,
    rerun_succeeded: bool = False,
    owner: str | None = None,
) -> tuple[JobRecord, bool]:
    """Create the job record and enqueue `bridgex.analyze_pair` once per job id. Returns (record, enqueued).

    `owner` (the submitting principal) is added to the job's owners, whoever created it.
    Queued/running/succeeded jobs are returned as they are; failed/cancelled ones (or any finished one with
    `force`) are reset and enqueued again. A queued or running job is never enqueued twice, even with force.
    `rerun_succeeded` (the gateway's auto path, whose cached ranking is gone) reruns a succeeded job with
    force, and leaves other states to the rules above.
    """
    norm = req.normalized(settings)
    dh = data_hash(settings, norm)
    store = JobStore(redis, ttl_s=settings.job_ttl_s)
    plain = job_id({"request": norm})  # the request without its data: one job in flight per request
    flying = store.in_flight(plain)
    if flying is not None:  # e.g. the gateway gathered demo data meanwhile, so the data hash moved
        return (store.add_owner(flying.id, owner) or flying) if owner else flying, False
    jid = store.resolve(job_id_for(norm, settings, dh))
    # atomic: one job in flight per request, whatever the data hash; another submitter's job that got there
    # first is returned (the loop only repeats if that job's record expired in between)
    while (holder := store.claim_in_flight(plain, jid)) is not None:
        other = store.get(holder)
        if other is not None:
            return (store.add_owner(holder, owner) or other) if owner else other, False
    request = {**norm, "data_hash": dh}
    rec, created = store.create(jid, request, request_id=request_id)
    if owner:
        rec = store.add_owner(jid, owner) or rec
    if not created:
        force = force or (rerun_succeeded and rec.state == JobState.succeeded)
        allowed = RERUNNABLE | ({JobState.succeeded} if force else frozenset())
        if rec.state not in allowed:
            if rec.state not in (JobState.queued, JobState.running):
                store.release_in_flight(plain, jid)  # finished and not rerun: nothing of it is in flight
            return rec, False
        reset = store.reset(jid, only_if=allowed, request_id=request_id)
        if reset is None:  # another submitter won the race (and holds the claim for this same id)
            return store.get(jid) or rec, False
        rec = reset
    try:
        _enqueue(celery_app, settings, jid, request, request_id=request_id, force=force)
    except Exception as e:  # broker down: leave a record a retry can re-run, then let the caller say 503
        msg = f"could not enqueue the job (broker unavailable: {type(e).__name__}: {e}); retry later"
        store.fail(jid, msg)
        raise
    return rec, True


def _enqueue(
    celery_app: Celery,
    settings: ServiceSettings,
    jid: str,
    request: dict[str, Any],
    *,
    request_id: str | None,
    force: bool,
) -> None:
    celery_app.send_task(
        TASK_NAME,
        args=[jid],
        kwargs={"request": request, "force": force},
        queue=settings.analyze_queue,
        serializer="json",
        headers={"request_id": request_id} if request_id else {},
    )


def request_fingerprint(norm: dict[str, Any]) -> str:
    """Short hash of the method parameters (used in artifact names)."""
    return hashlib.sha256(canonical_json(norm).encode()).hexdigest()[:12]
