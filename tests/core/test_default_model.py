"""The real default model (Gemma-3-270M from its wheel): BOS, shapes, sane probabilities, hooks removed."""

from __future__ import annotations

import pytest
import torch
from bridgex.profiling import find_mlp_act_modules, probe_activations, profile_texts

pytestmark = pytest.mark.slow

EN = [
    "All human beings are born free and equal in dignity and rights.",
    "They are endowed with reason and conscience and should act towards one another in a spirit of brotherhood.",
    "Everyone has the right to life, liberty and security of person.",
    "No one shall be held in slavery or servitude; slavery and the slave trade shall be prohibited.",
] * 3
FR = [
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "Ils sont doués de raison et de conscience et doivent agir les uns envers les autres dans un esprit de fraternité.",
    "Tout individu a droit à la vie, à la liberté et à la sûreté de sa personne.",
    "Nul ne sera tenu en esclavage ni en servitude; l'esclavage et la traite des esclaves sont interdits.",
] * 3


def test_default_model_profiles(default_model) -> None:
    lm = default_model
    assert lm.model_id == "gemma-3-270m" and lm.revision.startswith("q4km-")
    assert lm.num_layers == 18 and lm.intermediate_size == 2048 and len(lm.weight_hash) == 64
    assert (lm.path / "config.json").exists() and not list(lm.path.glob("*.gguf"))
    bos = lm.tokenizer.bos_token_id
    assert bos is not None and lm.tokenizer("hello")["input_ids"][0] == bos

    en = profile_texts(lm, EN, language="en", batch_size=4, chunk_tokens=64, max_tokens=150)
    fr = profile_texts(lm, FR, language="fr", batch_size=4, chunk_tokens=64, max_tokens=150)
    for prof in (en, fr):
        assert prof.n_tokens == 150
        assert prof.count.shape == (18, 2048) and prof.sum.shape == (18, 2048)
        p = prof.prob
        assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0
        assert float(p.std()) > 0.05  # not all equal: real neurons differ in how often they fire
        assert 0.05 < float(p.mean()) < 0.95
        assert torch.isfinite(prof.sum).all()
    assert not torch.equal(en.count, fr.count)
    assert all(len(m._forward_hooks) == 0 for m in find_mlp_act_modules(lm.model))

    prompts = ['English:"water"→Français:', 'English:"house"→Français:', 'English:"bread"→Français:']
    acts = probe_activations(lm, prompts, layers=[6, 11], batch_size=2)
    assert acts.shape == (2, 2048, 3) and acts.dtype == torch.float32 and torch.isfinite(acts).all()
    assert all(len(m._forward_hooks) == 0 for m in find_mlp_act_modules(lm.model))
