"""Artifacts: tensors as safetensors + a JSON manifest (provenance), each written atomically.

Why: profiles and probe activations are expensive and get reused by the CLI, the analyzer and the
evaluation; a manifest says which model (id, revision, weight hash), which data (content hash) and which
method version and parameters produced them, so stale artifacts can be detected. Atomic writes
(bridgex.atomic: temp file in the same folder, then os.replace) mean a reader never sees half a file, also
when the writer crashes. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

import bridgex
from bridgex.atomic import atomic_write, atomic_write_text
from bridgex.profiling import LanguageProfile

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,200}$")


class ArtifactError(ValueError):
    """A missing, incomplete or inconsistent artifact."""


# --------------------------------------------------------------------------------------------- hashes


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_text(s: str) -> str:
    return sha256_bytes(s.encode("utf-8"))


def sha256_json(obj: Any) -> str:
    """Hash of canonical JSON (sorted keys, no spaces): equal content, equal hash."""
    return sha256_text(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str))


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def sha256_texts(texts: list[str]) -> str:
    """Hash of an ordered list of texts (length-prefixed, so ['ab'] != ['a', 'b'])."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- manifests


def make_manifest(
    kind: str,
    *,
    model_id: str,
    revision: str | None,
    weight_hash: str | None,
    data_hash: str | None,
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance record stored next to every artifact."""
    manifest: dict[str, Any] = {
        "kind": kind,
        "model_id": model_id,
        "revision": revision,
        "weight_hash": weight_hash,
        "data_hash": data_hash,
        "params": params,
        "method_version": bridgex.METHOD_VERSION,
        "library_version": bridgex.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if extra:
        manifest.update(extra)
    return manifest


def model_manifest_fields(lm: Any) -> dict[str, Any]:
    """model_id / revision / weight_hash of a LoadedModel, as make_manifest takes them."""
    return {"model_id": lm.model_id, "revision": lm.revision, "weight_hash": lm.weight_hash}


# --------------------------------------------------------------------------------------------- atomic io


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ArtifactError(f"invalid artifact name {name!r}: use letters, digits and . _ - @ + (no slashes)")
    return name


def artifact_paths(path_dir: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    d = Path(path_dir)
    _check_name(name)
    return d / f"{name}.safetensors", d / f"{name}.json"


def write_artifact(
    path_dir: str | os.PathLike[str], name: str, tensors: dict[str, Tensor], manifest: dict[str, Any]
) -> Path:
    """Write `<name>.safetensors` then `<name>.json` (the manifest, with the tensor file's sha256 and shapes).

    The manifest goes last: a reader that finds it knows the tensor file it names is complete.
    """
    st_path, js_path = artifact_paths(path_dir, name)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    if not tensors:
        raise ArtifactError("an artifact needs at least one tensor")
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(st_path, lambda tmp: save_file(clean, str(tmp), metadata={"kind": str(manifest.get("kind", ""))}))
    full = {
        **manifest,
        "name": name,
        "file": st_path.name,
        "sha256": sha256_file(st_path),
        "tensors": {
            k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)} for k, v in clean.items()
        },
    }
    text = json.dumps(full, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    atomic_write_text(js_path, text)
    return st_path


def read_manifest(path_dir: str | os.PathLike[str], name: str) -> dict[str, Any]:
    _, js_path = artifact_paths(path_dir, name)
    if not js_path.exists():
        raise ArtifactError(f"artifact {name!r} not found in {path_dir} (no {js_path.name})")
    return json.loads(js_path.read_text(encoding="utf-8"))


def read_artifact(
    path_dir: str | os.PathLike[str], name: str, *, verify: bool = False
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, manifest). verify=True re-hashes the tensor file against the manifest."""
    st_path, _ = artifact_paths(path_dir, name)
    manifest = read_manifest(path_dir, name)
    if not st_path.exists():
        raise ArtifactError(f"artifact {name!r}: manifest present but {st_path.name} missing")
    if verify and manifest.get("sha256") and sha256_file(st_path) != manifest["sha256"]:
        raise ArtifactError(f"artifact {name!r}: {st_path.name} does not match its manifest's sha256")
    return load_file(str(st_path)), manifest


def list_artifacts(path_dir: str | os.PathLike[str], kind: str | None = None) -> list[str]:
    """Names of complete artifacts (manifest present) in a folder, optionally of one kind."""
    d = Path(path_dir)
    names = []
    for js in sorted(d.glob("*.json")):
        try:
            m = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and "file" in m and (kind is None or m.get("kind") == kind):
            names.append(js.stem)
    return names


# --------------------------------------------------------------------------------------------- typed helpers

PROFILE_KIND = "language_profile"
PROBE_KIND = "probe_activations"


def profile_name(language: str) -> str:
    return f"profile-{language}"


def save_profile(
    path_dir: str | os.PathLike[str],
    profile: LanguageProfile,
    manifest: dict[str, Any],
    name: str | None = None,
) -> Path:
    manifest = {
        **manifest,
        "kind": PROFILE_KIND,
        "language": profile.language,
        "n_tokens": profile.n_tokens,
        "profile_meta": profile.meta,
    }
    tensors = {
        "count": profile.count,
        "sum": profile.sum,
        "n_tokens": torch.tensor([profile.n_tokens], dtype=torch.int64),
    }
    return write_artifact(path_dir, name or profile_name(profile.language), tensors, manifest)


def load_profile(path_dir: str | os.PathLike[str], name_or_language: str) -> LanguageProfile:
    """A LanguageProfile; its manifest is in `.meta`. Accepts the artifact name or the language code."""
    name = name_or_language
    if not artifact_paths(path_dir, name)[1].exists():
        name = profile_name(name_or_language)
    tensors, manifest = read_artifact(path_dir, name)
    if manifest.get("kind") != PROFILE_KIND:
        raise ArtifactError(f"artifact {name!r} is a {manifest.get('kind')!r}, not a {PROFILE_KIND}")
    return LanguageProfile(
        language=manifest["language"],
        count=tensors["count"],
        sum=tensors["sum"],
        n_tokens=int(tensors["n_tokens"][0]),
        meta=manifest,
    )


def load_profiles(path_dir: str | os.PathLike[str]) -> dict[str, LanguageProfile]:
    """Every profile in a folder, keyed by language; two profiles of one language is an error."""
    out: dict[str, LanguageProfile] = {}
    for name in list_artifacts(path_dir, PROFILE_KIND):
        p = load_profile(path_dir, name)
        if p.language in out:
            raise ArtifactError(f"two profiles for language {p.language!r} in {path_dir}")
        out[p.language] = p
    return out


def save_probe_acts(
    path_dir: str | os.PathLike[str], name: str, acts: Tensor, layers: list[int], manifest: dict[str, Any]
) -> Path:
    if acts.ndim != 3 or acts.shape[0] != len(layers):
        raise ArtifactError(f"probe acts must be [len(layers)={len(layers)}, I, N], got {list(acts.shape)}")
    manifest = {**manifest, "kind": PROBE_KIND, "layers": [int(x) for x in layers]}
    return write_artifact(
        path_dir,
        name,
        {"acts": acts.to(torch.float32), "layers": torch.tensor(layers, dtype=torch.int64)},
        manifest,
    )


def load_probe_acts(path_dir: str | os.PathLike[str], name: str) -> tuple[Tensor, list[int], dict[str, Any]]:
    """(acts [L', I, N] float32, true layer ids, manifest)."""
    tensors, manifest = read_artifact(path_dir, name)
    if manifest.get("kind") != PROBE_KIND:
        raise ArtifactError(f"artifact {name!r} is a {manifest.get('kind')!r}, not a {PROBE_KIND}")
    return tensors["acts"], [int(x) for x in tensors["layers"].tolist()], manifest
