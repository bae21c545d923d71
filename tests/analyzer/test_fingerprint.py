"""Every method parameter is in the job id and the configuration fingerprint, every other settings field is declared
as changing no artifact, and the data hash covers only what the pair's analysis reads (issue 22, item 1)."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest
from bridgex.fingerprint import NOT_METHOD_PARAMS, config_fingerprint, job_id
from bridgex.settings import CoreSettings
from pydantic_settings import BaseSettings

from services.analyzer.config import AnalyzerSettings
from services.analyzer.stages.common import for_job
from services.analyzer.stages.context import AnalysisFailed
from services.common.analysis import (
    NOT_METHOD_SETTINGS,
    SPEC_SETTINGS,
    AnalysisRequest,
    AnalysisSpec,
    data_hash,
    spec_fields,
)
from services.common.config import ServiceSettings

SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (CoreSettings, ServiceSettings, AnalyzerSettings)
KEY_FIELDS = {"source", "target", "model", "revision"}
"""Spec fields that are parts of the key themselves (job id, cache key), not of the configuration fingerprint."""


def _settings(tmp_path: Path, **kw: Any) -> ServiceSettings:
    return ServiceSettings(data_dir=tmp_path, model="tiny", **kw)


def test_every_settings_field_is_declared() -> None:
    """A new settings field must be a method parameter (SPEC_SETTINGS) or declared as changing no artifact."""
    params, other = set(SPEC_SETTINGS.values()), set(NOT_METHOD_SETTINGS)
    assert not params & other, f"declared both ways: {sorted(params & other)}"
    for cls in SETTINGS_CLASSES:
        undeclared = sorted(set(cls.model_fields) - params - other)
        assert not undeclared, (
            f"{cls.__name__} fields {undeclared} are neither method parameters (services.common.analysis."
            "SPEC_SETTINGS: fingerprinted) nor declared as changing no artifact (NOT_METHOD_SETTINGS)"
        )
    known = set(AnalyzerSettings.model_fields)
    assert not (params | other) - known, f"declared but no such settings field: {sorted((params | other) - known)}"


def test_every_spec_field_is_a_request_key(tmp_path: Path) -> None:
    """The normalised request is exactly the spec's fields, each from a setting (or the request, or the code)."""
    assert set(spec_fields()) == set(SPEC_SETTINGS) | {"source", "target", "method_version"}
    norm = AnalysisRequest(source="sw", target="fi").normalized(_settings(tmp_path))
    assert list(norm) == spec_fields()
    assert AnalysisSpec.from_request(norm).as_dict() == norm
    assert NOT_METHOD_PARAMS - set(spec_fields()) == {"data_hash"}
    assert NOT_METHOD_PARAMS & set(spec_fields()) == KEY_FIELDS


def _other(value: Any, annotation: Any = None) -> Any:
    """A different value of a field's type."""
    if typing.get_origin(annotation) is typing.Literal:
        return next(a for a in typing.get_args(annotation) if a != value)
    if value is None:
        return "r1"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list | tuple) and value and isinstance(value[0], float):
        return type(value)(v / 2 for v in value)
    if isinstance(value, list | tuple):
        return type(value)(value[:-1])
    raise AssertionError(f"no other value for {value!r}")


def _literal(annotation: Any) -> Any:
    """The Literal inside `Literal[...] | None`, or the annotation itself."""
    for arg in typing.get_args(annotation) or ():
        if typing.get_origin(arg) is typing.Literal:
            return arg
    return annotation


@pytest.mark.parametrize("name", spec_fields())
def test_every_spec_field_changes_the_job_id_and_fingerprint(tmp_path: Path, name: str) -> None:
    norm = AnalysisRequest(source="sw", target="fi").normalized(_settings(tmp_path))
    spec_type = typing.get_type_hints(AnalysisSpec)[name]
    changed = {**norm, name: _other(norm[name], _literal(spec_type))}
    assert job_id({"request": changed}) != job_id({"request": norm}), name
    if name in KEY_FIELDS:
        assert config_fingerprint(changed) == config_fingerprint(norm), name
    else:
        assert config_fingerprint(changed) != config_fingerprint(norm), f"{name} is not fingerprinted"


@pytest.mark.parametrize("spec_name", sorted(SPEC_SETTINGS))
def test_every_method_setting_reaches_the_request(tmp_path: Path, spec_name: str) -> None:
    """Changing a method parameter's setting changes the default request (so the served configuration or,
    for the model and revision, the key)."""
    setting = SPEC_SETTINGS[spec_name]
    base = _settings(tmp_path)
    value = _other(getattr(base, setting), ServiceSettings.model_fields[setting].annotation)
    changed = base.model_copy(update={setting: value})
    a = AnalysisRequest(source="sw", target="fi").normalized(base)
    b = AnalysisRequest(source="sw", target="fi").normalized(changed)
    assert a[spec_name] != b[spec_name], spec_name
    assert {k for k in a if a[k] != b[k]} == {spec_name}
    if spec_name not in KEY_FIELDS:
        assert config_fingerprint(a) != config_fingerprint(b)


def test_profile_and_capture_parameters_are_fingerprinted(tmp_path: Path) -> None:
    """The ones issue 22 found missing, and the serving ones added before."""
    base = _settings(tmp_path)
    fp = config_fingerprint(AnalysisRequest(source="sw", target="fi").normalized(base))
    for change in (
        {"profile_max_tokens": 1000},
        {"chunk_tokens": 128},
        {"capture_backend": "vllm"},
        {"batch_size": 4},
        {"serve_incumbent": "none"},
        {"serve_alpha": 0.1},
        {"dev_max": 200},
        {"demo_choice": "kept"},
    ):
        norm = AnalysisRequest(source="sw", target="fi").normalized(base.model_copy(update=change))
        assert config_fingerprint(norm) != fp, change
    for change in ({"worker_url": "http://elsewhere:1"}, {"gold_filter_concurrency": 3}, {"log_level": "DEBUG"}):
        norm = AnalysisRequest(source="sw", target="fi").normalized(base.model_copy(update=change))
        assert config_fingerprint(norm) == fp, change


def test_older_queued_job_takes_the_analyzers_settings(tmp_path: Path) -> None:
    settings = AnalyzerSettings(data_dir=tmp_path, model="tiny", chunk_tokens=64, batch_size=2)
    norm = AnalysisRequest(source="sw", target="fi").normalized(settings)
    old = {
        k: v
        for k, v in norm.items()
        if k not in ("capture_backend", "batch_size", "chunk_tokens", "profile_max_tokens")
    }
    spec = AnalysisSpec.from_request({**old, "data_hash": "d"})
    assert spec.chunk_tokens is None and spec.capture_backend is None
    filled, run = for_job(spec, settings)
    assert filled.as_dict() == {**norm, "data_hash": "d"}  # published as what ran: the current configuration
    assert run is settings
    # a job asking for other profile parameters runs with them
    other = AnalysisSpec.from_request({**norm, "chunk_tokens": 32, "profile_max_tokens": 100})
    got, run = for_job(other, settings)
    assert (run.chunk_tokens, run.profile_max_tokens, run.batch_size) == (32, 100, 2)
    assert got == other and settings.chunk_tokens == 64
    with pytest.raises(AnalysisFailed, match="capture backend"):
        for_job(dataclasses.replace(other, capture_backend="vllm"), settings)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _manifest(root: Path, seed: int = 0, pairs: tuple[str, ...] = ()) -> None:
    params = {"seed": seed, "eval_fraction": 0.5, "dev_fraction": 0.2}
    _write(root / "manifest.json", json.dumps({"params": params, "pairs": list(pairs)}))


def test_data_hash_covers_only_what_the_pair_reads(tmp_path: Path) -> None:
    s = _settings(tmp_path, candidates=("en", "de"))
    norm = AnalysisRequest(source="sw", target="fi").normalized(s)
    for lang in ("sw", "fi", "en", "de", "ja", "id"):
        _write(tmp_path / "text" / f"{lang}.txt", f"text {lang}")
    _write(tmp_path / "dict" / "sw-fi" / "all.tsv", "a\tb\tx\n")
    _write(tmp_path / "dict" / "sw-fi" / "probe.tsv", "a\tb\tx\n")
    _manifest(tmp_path)
    h = data_hash(s, norm)
    assert data_hash(s, AnalysisSpec.from_request(norm)) == h
    # another pair's data is gathered: its dictionary, its text, and the manifest rewritten with the same splits
    _write(tmp_path / "dict" / "id-ja" / "all.tsv", "c\td\tx\n")
    _write(tmp_path / "text" / "ja.txt", "more text")
    _write(tmp_path / "text" / "sw.udhr.json", "{}")
    _manifest(tmp_path, pairs=("id-ja",))
    assert data_hash(s, norm) == h
    # what the pair reads: its dictionary, a demonstration dictionary (sw->en), a profiled text, the splits
    for change in (
        lambda: _write(tmp_path / "dict" / "sw-fi" / "probe.tsv", "a\tb\tx\nc\td\tx\n"),
        lambda: _write(tmp_path / "dict" / "sw-en" / "all.tsv", "a\tb\tx\n"),
        lambda: _write(tmp_path / "text" / "de.txt", "hallo welt"),
        lambda: _manifest(tmp_path, seed=1),
    ):
        change()
        h2 = data_hash(s, norm)
        assert h2 != h
        h = h2
    # a pair prepared only the other way round is read from the reverse's all.tsv
    rev = AnalysisRequest(source="fi", target="sw").normalized(s)
    h = data_hash(s, rev)
    _write(tmp_path / "dict" / "sw-fi" / "all.tsv", "a\tb\tx\ne\tf\tx\n")
    assert data_hash(s, rev) != h
    # LAPE profiles its fixed language set: their texts count
    lape = AnalysisRequest(source="sw", target="fi", selection="lape").normalized(s)
    h = data_hash(s, lape)
    _write(tmp_path / "text" / "ja.txt", "yet more text")
    assert data_hash(s, lape) != h
