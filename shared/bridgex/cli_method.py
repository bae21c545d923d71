"""`bridgex profile | probe | rank`: the method on files, from a shell, without any service.

    bridgex profile --language fr --text fr.txt --out profiles/
    bridgex probe --pairs en-fr.tsv --source en --target fr --out probes/
    bridgex rank --profiles profiles/ --probe probes/probe-en-fr.safetensors --source en --target fr

Progress bars go to stderr, so `rank` can print its JSON on stdout for pipes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True)


class Backend(StrEnum):
    """Capture engines (bridgex.capture)."""

    hf = "hf"
    vllm = "vllm"


BACKEND_HELP = (
    "Capture engine (required): 'hf' = forward hooks on the HF model, 'vllm' = inside vLLM's V1 "
    "engine. Both write the same artifacts."
)


def _settings() -> Any:
    from bridgex.settings import CoreSettings

    return CoreSettings()


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(what, total=None)

        def update(current: int, total: int) -> None:
            bar.update(task, completed=current, total=total)

        yield update


def _fail(msg: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {msg}")
    return typer.Exit(2)


def _load(model: str | None, device: str, dtype: str) -> Any:
    from bridgex.models import load_model

    with err.status(f"loading model {model or 'default'} ..."):
        try:
            lm = load_model(model, device=device, dtype=dtype)
        except (OSError, ValueError) as e:
            raise _fail(f"cannot load model {model!r}: {e}") from e
    err.print(
        f"model {lm.model_id}@{lm.revision}: {lm.num_layers} layers x {lm.intermediate_size} neurons on {lm.device}"
    )
    return lm


def _read_texts(paths: list[Path]) -> list[str]:
    try:
        from bridgex.corpora import read_texts
    except ImportError:  # corpora not installed: plain non-empty lines

        def read_texts(p: Path) -> list[str]:  # type: ignore[misc]
            return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]

    texts: list[str] = []
    for p in paths:
        if not p.is_file():
            raise _fail(f"text file not found: {p}")
        texts.extend(read_texts(p))
    return texts


def _layers_arg(spec: str | None, num_layers: int, window: tuple[float, float]) -> list[int]:
    if spec in (None, "", "window"):
        from bridgex.ranking import window_layers

        return window_layers(num_layers, window)
    if spec == "all":
        return list(range(num_layers))
    try:
        layers = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError as e:
        raise _fail(f"--layers must be 'window', 'all' or comma-separated ints, not {spec!r}") from e
    bad = [x for x in layers if not 0 <= x < num_layers]
    if bad:
        raise _fail(f"layers {bad} out of range (model has {num_layers})")
    return layers


def _window_arg(spec: str | None, default: tuple[float, float]) -> tuple[float, float]:
    if not spec:
        return tuple(default)  # type: ignore[return-value]
    try:
        lo, hi = (float(x) for x in spec.split(","))
    except ValueError as e:
        raise _fail(f"--window must be 'lo,hi' depth fractions like 0.3125,0.6875, not {spec!r}") from e
    return lo, hi


def _split_artifact(path: Path) -> tuple[Path, str]:
    """A probe given as `<dir>/<name>.safetensors`, `<dir>/<name>.json` or `<dir>/<name>`."""
    name = path.name
    for suffix in (".safetensors", ".json"):
        name = name.removesuffix(suffix)
    return path.parent, name


def _prompts_from(
    path: Path, source: str | None, target: str | None, limit: int | None
) -> tuple[list[str], str | None, dict[str, Any]]:
    """Prompts + data hash from a ProbeSet JSON, a word-pairs TSV (needs source/target) or a prompt a line."""
    if not path.is_file():
        raise _fail(f"prompts file not found: {path}")
    if path.suffix == ".json":
        from bridgex.probes import ProbeSet

        ps = ProbeSet.load(path)
        prompts = ps.prompts[:limit] if limit else ps.prompts
        return prompts, ps.hash or ps.content_hash(), {"source": ps.source, "target": ps.target}
    if path.suffix == ".tsv":
        if not source or not target:
            raise _fail("a word-pairs TSV needs --source and --target")
        from bridgex.prompts import word_prompt

        words: list[str] = []
        seen: set[str] = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            w = line.split("\t")[0].strip()
            if w and w not in seen:
                seen.add(w)
                words.append(w)
        words = words[:limit] if limit else words
        return [word_prompt(w, source, target) for w in words], None, {"source": source, "target": target}
    prompts = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return (prompts[:limit] if limit else prompts), None, {}


def profile_cmd(
    language: str = typer.Option(..., "--language", "-l", help="Language code of the text (e.g. fr)."),
    backend: Backend = typer.Option(..., "--backend", "-b", help=BACKEND_HELP, case_sensitive=False),
    text: list[Path] = typer.Option(..., "--text", "-t", help="Text file(s): lines, .jsonl, UDHR .html."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for profile-<language>.safetensors/.json"),
    model: str | None = typer.Option(None, "--model", "-m", help="Hub id, folder, or gemma-3-270m (default)."),
    max_tokens: int | None = typer.Option(None, help="Cap on language tokens (default: settings)."),
    batch_size: int | None = typer.Option(None, help="Chunks per forward pass."),
    chunk_tokens: int | None = typer.Option(None, help="Tokens per chunk, BOS included."),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("auto"),
) -> None:
    """Profile one language: activation counts and sums of every MLP neuron (method step 1)."""
    from bridgex.pipeline import profile_language

    s = _settings()
    texts = _read_texts(text)
    if not texts:
        raise _fail("the text files contain no text")
    lm = _load(model or s.model, device, dtype)
    s = s.model_copy(
        update={
            k: v
            for k, v in {
                "profile_max_tokens": max_tokens,
                "batch_size": batch_size,
                "chunk_tokens": chunk_tokens,
            }.items()
            if v is not None
        }
    )
    s = s.model_copy(update={"capture_backend": backend.value})
    with _progress(f"profile {language} with {backend.value} (tokens)") as update:
        try:
            path = profile_language(lm, texts, language, s, out, progress=update)
        except ValueError as e:
            raise _fail(str(e)) from e
    err.print(f"wrote {path}")


def probe_cmd(
    prompts: Path = typer.Option(
        ...,
        "--prompts",
        "--pairs",
        "-p",
        help="ProbeSet .json, word pairs .tsv (with --source/--target), or one prompt a line.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    backend: Backend = typer.Option(..., "--backend", "-b", help=BACKEND_HELP, case_sensitive=False),
    source: str | None = typer.Option(None, "--source", "-s"),
    target: str | None = typer.Option(None, "--target", "-t"),
    name: str | None = typer.Option(None, help="Artifact name (default probe-<source>-<target> or probe)."),
    model: str | None = typer.Option(None, "--model", "-m"),
    layers: str | None = typer.Option(None, help="'window' (default), 'all', or e.g. 6,7,8."),
    window: str | None = typer.Option(None, help="Depth window 'lo,hi' (default: settings)."),
    reduce: str = typer.Option("mean", help="'mean' over prompt tokens or 'last' token."),
    limit: int | None = typer.Option(None, help="Use at most this many prompts."),
    batch_size: int = typer.Option(16),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("auto"),
) -> None:
    """Probe activations A(l, j, n) of a prompt set on the chosen layers (method step 3)."""
    from bridgex.pipeline import probe_language_pair

    if reduce not in ("mean", "last"):
        raise _fail(f"--reduce must be 'mean' or 'last', not {reduce!r}")
    s = _settings()
    texts, data_hash, info = _prompts_from(prompts, source, target, limit)
    if not texts:
        raise _fail(f"no prompts in {prompts}")
    lm = _load(model or s.model, device, dtype)
    layer_list = _layers_arg(layers, lm.num_layers, _window_arg(window, s.window))
    src, tgt = info.get("source", source), info.get("target", target)
    name = name or (f"probe-{src}-{tgt}" if src and tgt else "probe")
    with _progress(f"probe {len(texts)} prompts with {backend.value}") as update:
        try:
            path = probe_language_pair(
                lm,
                texts,
                layer_list,
                reduce,
                out,
                name,
                batch_size=batch_size,
                progress=update,
                probe_hash=data_hash,
                extra={"source": src, "target": tgt, "prompts_file": str(prompts)},
                backend=backend.value,
            )
        except ValueError as e:
            raise _fail(str(e)) from e
    err.print(f"wrote {path} (layers {layer_list})")


def rank_cmd(
    profiles: Path = typer.Option(..., "--profiles", help="Folder with profile-<lang> artifacts."),
    probe: Path = typer.Option(..., "--probe", help="Probe artifact (.safetensors / .json / name with folder)."),
    source: str = typer.Option(..., "--source", "-s"),
    target: str = typer.Option(..., "--target", "-t"),
    candidates: str | None = typer.Option(None, help="Comma-separated bridge candidates (default: settings)."),
    selection: str | None = typer.Option(None, help="top_rate | lape"),
    top_rate: float | None = typer.Option(None),
    bridge_set: str | None = typer.Option(None, "--bridge-set", help="specific | full"),
    k: int | None = typer.Option(None, "--k", help="Bridge neurons per layer."),
    hsic_variant: str | None = typer.Option(None, help="HSIC variant: reference | cka"),
    window: str | None = typer.Option(None, help="Restrict to a depth window 'lo,hi' (default: the probe's layers)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the JSON here instead of stdout."),
) -> None:
    """Rank bridge languages for source -> target by HSIC (method steps 4-6); prints the ranking JSON."""
    from bridgex.artifacts import ArtifactError, load_probe_acts, load_profiles
    from bridgex.pipeline import rank_pair
    from bridgex.ranking import window_layers

    s = _settings()
    try:
        profs = load_profiles(profiles)
        acts, layers, manifest = load_probe_acts(*_split_artifact(probe))
    except (ArtifactError, OSError) as e:
        raise _fail(str(e)) from e
    if not profs:
        raise _fail(f"no profiles in {profiles}")
    models = {(p.meta.get("model_id"), p.meta.get("revision")) for p in profs.values()}
    models.add((manifest.get("model_id"), manifest.get("revision")))
    if len(models) > 1:
        raise _fail(f"artifacts come from different models: {sorted(map(str, models))}")
    if window:
        num_layers = next(iter(profs.values())).count.shape[0]
        wanted = window_layers(num_layers, _window_arg(window, s.window))
        missing = [x for x in wanted if x not in layers]
        if missing:
            raise _fail(f"window layers {missing} are not in the probe artifact (it has {layers})")
        acts = acts[[layers.index(x) for x in wanted]]
        layers = wanted
    cands = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    with _progress(f"rank {source}->{target}") as update:
        try:
            ranking = rank_pair(
                profs,
                acts,
                layers,
                source,
                target,
                cands,
                settings=s,
                selection=selection,
                top_rate=top_rate,
                bridge_set_kind=bridge_set,
                k=k,
                hsic_variant=hsic_variant,
                provenance={
                    "model_id": manifest.get("model_id"),
                    "revision": manifest.get("revision"),
                    "probe_hash": manifest.get("data_hash"),
                },
                progress=update,
            )
        except ValueError as e:
            raise _fail(str(e)) from e
    text = json.dumps(ranking.model_dump(mode="json"), indent=2, ensure_ascii=False)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        err.print(f"wrote {out}; best bridge: {ranking.best}")
    else:
        sys.stdout.write(text + "\n")


def register(app: typer.Typer) -> None:
    """Attach `profile`, `probe` and `rank` to the `bridgex` app."""
    app.command("profile")(profile_cmd)
    app.command("probe")(probe_cmd)
    app.command("rank")(rank_cmd)
