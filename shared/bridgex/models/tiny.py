"""A random tiny Llama with a byte-level BPE tokenizer: real shapes for tests and benchmarks, in a second."""

from __future__ import annotations

import os
from pathlib import Path

import torch

_TINY_CORPUS = """\
The quick brown fox jumps over the lazy dog. Water, house, book, tree, sun, moon, bread.
Der schnelle braune Fuchs springt über den faulen Hund. Wasser, Haus, Buch, Baum, Sonne, Mond, Brot.
Le renard brun rapide saute par-dessus le chien paresseux. Eau, maison, livre, arbre, soleil, lune, pain.
La volpe marrone salta sopra il cane pigro. Acqua, casa, libro, albero, sole, luna, pane.
A raposa marrom pula sobre o cão preguiçoso. Água, casa, livro, árvore, sol, lua, pão.
El rápido zorro marrón salta sobre el perro perezoso. Agua, casa, libro, árbol, sol, luna, pan.
敏捷的棕色狐狸跳过了懒狗。水，房子，书，树，太阳，月亮，面包。
素早い茶色の狐が怠け者の犬を飛び越える。水、家、本、木、太陽、月、パン。
الثعلب البني السريع يقفز فوق الكلب الكسول. ماء، بيت، كتاب، شجرة، شمس، قمر، خبز.
השועל החום המהיר קופץ מעל הכלב העצלן. מים, בית, ספר, עץ, שמש, ירח, לחם.
Rubah coklat yang cepat melompati anjing yang malas. Air, rumah, buku, pohon, matahari, bulan, roti.
Ang mabilis na kayumangging soro ay tumalon sa tamad na aso. Tubig, bahay, aklat, puno, araw, buwan.
Nopea ruskea kettu hyppää laiskan koiran yli. Vesi, talo, kirja, puu, aurinko, kuu, leipä.
A gyors barna róka átugrik a lusta kutya felett. Víz, ház, könyv, fa, nap, hold, kenyér.
Mbweha mwepesi wa kahawia anaruka juu ya mbwa mvivu. Maji, nyumba, kitabu, mti, jua, mwezi, mkate.
English:"water"→Français:"eau"→Deutsch:"Wasser"→中文:"水"→日本語:"水"→عربي:"ماء"→עִברִית:"מים"
"""


def tiny_random_llama(
    path: str | os.PathLike[str], *, layers: int = 4, hidden: int = 256, intermediate: int = 128, seed: int = 0
) -> Path:
    """A random tiny Llama + byte-level BPE tokenizer folder that Auto* classes and vLLM load (tests, benchmarks).

    Heads are 64 wide: vLLM's CPU attention supports head sizes from 32 up, not 16.

    Byte-level BPE means any text (CJK, Arabic, Hebrew, emoji) tokenizes; the post-processor prepends `<s>`
    like real Llama/Gemma tokenizers, so BOS handling is exercised. Deterministic for a given seed.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<s>", "</s>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_TINY_CORPUS.splitlines(), trainer=trainer)
    pad_id, bos_id, eos_id = (bpe.token_to_id(s) for s in specials)
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.save_pretrained(out)

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=2048,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(out)
    return out
