"""ONE prompt builder and ONE output parser per task (BLI words, MT sentences, MRC, classification).

Probes, the gateway and the evaluation harness all call these, so a prompt seen while choosing a bridge is the
prompt used when serving it. Formats follow method.md step 2/7 (the paper's X-ICL chain
`S:"w"→B:"w_b"→T:` with native language names); zero-shot by default, k-shot demonstrations optional.
Parsers are lenient on purpose: base models echo, quote in many styles and run on past the answer.

Text inside a chain's quotes is escaped (`escape_span`): a backslash before `"`, `→` and `\\` itself, so user
text such as `water"→Français:"chien` cannot close its span and write its own chain step. Newlines become
spaces and control characters go. The parsers skip escaped delimiters and undo the escaping.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

ARROW = "→"
SIB_LABELS: tuple[str, ...] = (
    "science/technology",
    "travel",
    "politics",
    "sports",
    "health",
    "entertainment",
    "geography",
)
"""SIB-200 topic labels, in the dataset's spelling."""
CHOICES = ("A", "B", "C", "D")

# opening quote -> closing quotes that may end it (base models mix styles: „word“, „word”, «word»).
_QUOTES: dict[str, str] = {
    '"': '"”“',
    "“": '”“"',
    "”": '”"',
    "„": '“”"',
    "«": "»",
    "»": "«",
    "‹": "›",
    "「": "」",
    "『": "』",
    "＂": "＂",
    "'": "'’",
    "‘": "’'",
    "‚": "‘’",
}
_ALL_QUOTES = "".join(sorted(set(_QUOTES) | set("".join(_QUOTES.values()))))
_APOSTROPHES = "'‘‚"  # open a quote only at the very start: "l'eau" is a word, not a quote
_NIQQUD = re.compile("[\u0591-\u05c7]")
_STOPS = (ARROW, "->", "\n")
_ESCAPES = {"\\": "\\\\", '"': '\\"', ARROW: "\\" + ARROW}
CHAIN_DELIMITERS = frozenset(_ESCAPES)
"""Characters escaped inside a quoted span: they could otherwise end it or start a new chain step."""
_UNESCAPE = re.compile(r'\\([\\"→])')


@dataclass(frozen=True)
class Demo:
    """One demonstration of a chain prompt (words or sentences); `bridge_text` renders the 3-step chain."""

    source_text: str
    target_text: str
    bridge_text: str | None = None


@dataclass(frozen=True)
class MRCDemo:
    """One Belebele-style demonstration: passage, question, 4 options, the answer letter."""

    passage: str
    question: str
    options: tuple[str, str, str, str]
    answer: str


@dataclass(frozen=True)
class ClsDemo:
    """One SIB-200-style demonstration: text and its label."""

    text: str
    label: str


def _name(code: str) -> str:
    """Prompt name of a language (native name, method.md step 2)."""
    from bridgex.languages import native_name  # lazy: keep prompts importable in light environments

    return native_name(code)


def _one_line(text: str) -> str:
    """Prompts are one chain per line and generation stops at a newline, so inner newlines become spaces;
    control characters (NUL and the like) are dropped."""
    text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")
    return " ".join(text.split())


def escape_span(text: str) -> str:
    """Text as it goes between a chain's quotes: one line, with `\\`, `"` and `→` escaped by a backslash."""
    return "".join(_ESCAPES.get(ch, ch) for ch in _one_line(text))


def unescape_span(text: str) -> str:
    """Undo `escape_span` (on a model's answer, which may copy the escaping)."""
    return _UNESCAPE.sub(r"\1", text)


def _chain(parts: Sequence[tuple[str, str | None]]) -> str:
    """`N1:"t1"→N2:"t2"→N3:` ; a part with text None is the open slot at the end."""
    out = []
    for name, text in parts:
        out.append(f"{name}:" if text is None else f'{name}:"{escape_span(text)}"')
    return ARROW.join(out)


def _chain_prompt(
    text: str, source: str, target: str, bridge: str | None, bridge_text: str | None, demos: Sequence[Demo]
) -> str:
    if bridge_text is not None and bridge is None:
        raise ValueError("bridge_text given without bridge language")
    ns, nt = _name(source), _name(target)
    nb = _name(bridge) if bridge is not None else None
    lines = []
    for d in demos:
        parts: list[tuple[str, str | None]] = [(ns, d.source_text)]
        if nb is not None and d.bridge_text is not None:
            parts.append((nb, d.bridge_text))
        parts.append((nt, d.target_text))
        lines.append(_chain(parts))
    parts = [(ns, text)]
    if nb is not None and bridge_text is not None:
        parts.append((nb, bridge_text))
    elif nb is not None:
        raise ValueError("bridge given without bridge_text: first call with target=bridge to get it")
    parts.append((nt, None))
    lines.append(_chain(parts))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- words (BLI)
def word_prompt(
    word: str,
    source: str,
    target: str,
    bridge: str | None = None,
    bridge_word: str | None = None,
    demos: Sequence[Demo] = (),
) -> str:
    """`{Ns}:"{w}"→{Nt}:`; bridged step 2 `{Ns}:"{w}"→{Nb}:"{wb}"→{Nt}:` (step 1 is `word_prompt(w, s, b)`).

    Demonstrations render as complete chains, one per line, before the query.
    """
    if not word.strip():
        raise ValueError("word is empty")
    return _chain_prompt(word, source, target, bridge, bridge_word, demos)


def _strip_edges(s: str) -> str:
    return s.strip().strip(_ALL_QUOTES).strip().rstrip(".,;:!?。、，").strip()


def _quoted(text: str) -> str | None:
    """Content of the first quoted span in `text` (None when no quote opens before an arrow or newline)."""
    for i, ch in enumerate(text):
        if text.startswith(_STOPS, i):
            return None
        if ch in _QUOTES and (i == 0 or (ch not in _APOSTROPHES and text[i - 1] in " \t:=")):
            closers = _QUOTES[ch]
            rest = text[i + 1 :]
            ends = [j for j, c in _unescaped(rest) if c in closers]
            if ends:
                return rest[: ends[0]]
            # unclosed (cut by max_tokens): up to the next arrow/newline
            return _cut(rest)
    return None


def _unescaped(text: str) -> list[tuple[int, str]]:
    """(index, char) of the characters of `text` that no backslash escapes (escape_span's delimiters)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in CHAIN_DELIMITERS:
            i += 2
            continue
        out.append((i, text[i]))
        i += 1
    return out


def _cut(text: str) -> str:
    """Text up to the first arrow or newline that is not escaped."""
    for i, _ch in _unescaped(text):
        if text.startswith(_STOPS, i):
            return text[:i]
    return text


_MARKUP = re.compile(r"</?[A-Za-z][A-Za-z0-9]*\s*/?>")


def parse_word(output: str) -> str:
    """The model's answer word: the first quoted span, else the text before an arrow/newline; "" when nothing.

    An echo such as `"dog"→French: "eau"` parses to "dog": that is what the model answered (and the gold
    filter then rejects it), the rest is the model running on.
    """
    if not output:
        return ""
    text = _MARKUP.sub("", output).lstrip()  # base models wrap answers in <i>..</i>, <b>..</b>
    q = _quoted(text)
    if q is None:
        q = _cut(text)
    return _answer(q)


def _answer(span: str) -> str:
    """The answer word in a quoted span or cut text: escaping undone, edge quotes and punctuation stripped."""
    return _strip_edges(unescape_span(span))


_EDGES = _ALL_QUOTES + ".,;:!?。、，"
"""What `_strip_edges` may take off the end of an answer, besides whitespace."""


def parse_word_partial(output: str) -> tuple[str, bool] | None:
    """What `parse_word` makes of every completion that starts with `output` (a greedy decode cut after a few
    tokens): `(answer, True)` when `output` already decides it (a closed quote, or a stop before any quote);
    `(prefix, False)` when the answer is known to start with `prefix` (an open quote: the answer may still grow, or
    lose trailing punctuation and quotes, but never these characters); None when nothing is decided yet (no quote
    has opened, so a later quoted span may still become the answer; or markup may be forming).

    Sound by construction for every continuation: it follows `parse_word` step by step and leaves undecided what a
    continuation could change (a trailing `\\` that may escape the next character, a `-` that may become `->`).
    """
    if "<" in output:
        return None  # `_MARKUP` may remove a tag that the continuation completes
    text = output.lstrip()
    for i, ch in enumerate(text):
        if text.startswith(_STOPS, i):  # `_quoted` gives up: the answer is `_cut` of the whole text
            head = _cut(text)
            if len(head) < len(text):
                return _answer(head), True
            return _open_prefix(head)
        if ch in _QUOTES and (i == 0 or (ch not in _APOSTROPHES and text[i - 1] in " \t:=")):
            rest = text[i + 1 :]
            ends = [j for j, c in _unescaped(rest) if c in _QUOTES[ch]]
            if ends:
                return _answer(rest[: ends[0]]), True
            # no closer yet: the answer is the span up to a later closer, or cut at its first stop
            return _open_prefix(_cut(rest))
    return None


def _open_prefix(head: str) -> tuple[str, bool] | None:
    """(the text that every answer grown from `head` starts with, False), or None when that is empty."""
    head = head.rstrip("-\\")  # a `-` may become `->`; a backslash may escape what follows
    core = unescape_span(head).lstrip().lstrip(_ALL_QUOTES).lstrip()  # `_strip_edges`' left side, settled
    while core and (core[-1] in _EDGES or core[-1].isspace()):  # its right side may still take these
        core = core[:-1]
    return (core, False) if core else None


def word_fold(w: str, *, prefix: bool = False) -> str:
    """`normalize_word` in canonical decomposition (NFD), for prefix tests: a prefix of a word's fold is a prefix
    of the fold of every longer word. `prefix=True` folds a prefix: its trailing whitespace (the word's end may
    strip it) and combining marks (a continuation's marks may be reordered among them) are dropped."""
    if not prefix:
        return unicodedata.normalize("NFD", normalize_word(w))
    out = unicodedata.normalize("NFD", _NIQQUD.sub("", unicodedata.normalize("NFC", w)).casefold()).lstrip()
    while out and (unicodedata.combining(out[-1]) or out[-1].isspace()):  # a word's end may still strip these
        out = out[:-1]
    return out


def normalize_word(w: str) -> str:
    """Form for gold matching: NFC, Hebrew niqqud/cantillation (U+0591-U+05C7) gone, casefolded, stripped."""
    w = unicodedata.normalize("NFC", w)
    w = _NIQQUD.sub("", w)
    return unicodedata.normalize("NFC", w.casefold()).strip()


# --------------------------------------------------------------------------------------------- sentences (MT)
def sentence_prompt(
    text: str,
    source: str,
    target: str,
    bridge: str | None = None,
    bridge_text: str | None = None,
    demos: Sequence[Demo] = (),
) -> str:
    """Same chain as words, for sentences: first `sentence_prompt(x, s, b)` gives x_b, then
    `sentence_prompt(x, s, t, bridge=b, bridge_text=x_b)` shows both and asks for t."""
    if not text.strip():
        raise ValueError("text is empty")
    return _chain_prompt(text, source, target, bridge, bridge_text, demos)


def parse_sentence(output: str) -> str:
    """The translated sentence: a quoted span (inner quotes kept, it ends at a closing quote followed by an
    arrow, newline or the end), else the text before an arrow/newline."""
    if not output:
        return ""
    text = output.lstrip()
    if text and text[0] in _QUOTES:
        closers = _QUOTES[text[0]]
        rest = text[1:]
        for j, c in _unescaped(rest):
            if c in closers:
                after = rest[j + 1 :].lstrip(" \t")
                if not after or after.startswith(_STOPS):
                    return unescape_span(rest[:j]).strip()
        return unescape_span(_cut(rest)).strip()
    # sentence punctuation is kept (chrF counts it)
    return unescape_span(_cut(text)).strip().strip(_ALL_QUOTES).strip()


# ------------------------------------------------------------------------------------------ MRC (Belebele)
def _mrc_block(
    passage: str, question: str, options: Sequence[str], bridge_name: str | None, bridge_passage: str | None
) -> str:
    if len(options) != 4:
        raise ValueError(f"MRC needs exactly 4 options, got {len(options)}")
    lines = [f"P: {_one_line(passage)}"]
    if bridge_passage is not None:
        lines.append(f"P ({bridge_name}): {_one_line(bridge_passage)}")
    lines.append(f"Q: {_one_line(question)}")
    lines += [f"{letter}: {_one_line(opt)}" for letter, opt in zip(CHOICES, options, strict=True)]
    return "\n".join(lines)


def mrc_prompt(
    passage: str,
    question: str,
    options: Sequence[str],
    *,
    bridge: str | None = None,
    bridge_passage: str | None = None,
    demos: Sequence[MRCDemo] = (),
) -> str:
    """Belebele format (P/Q/A-D/Answer:). With a bridge the passage's translation into it is shown under the
    original (method.md step 7: translate the passage into B, ask in the question's language)."""
    if not passage.strip() or not question.strip():
        raise ValueError("passage and question must not be empty")
    if (bridge is None) != (bridge_passage is None):
        raise ValueError("give both bridge and bridge_passage, or neither")
    nb = _name(bridge) if bridge is not None else None
    blocks = []
    for d in demos:
        if d.answer not in CHOICES:
            raise ValueError(f"demo answer must be one of {CHOICES}, got {d.answer!r}")
        blocks.append(_mrc_block(d.passage, d.question, d.options, None, None) + f"\nAnswer: {d.answer}")
    blocks.append(_mrc_block(passage, question, options, nb, bridge_passage) + "\nAnswer:")
    return "\n\n".join(blocks)


_CHOICE_RE = re.compile(r"(?<![A-Za-z0-9])([ABCD])(?![A-Za-z0-9])")


def parse_choice(output: str, options: Sequence[str] | None = None) -> str | None:
    """First standalone letter A-D (`B`, `(C)`, `D.`, `Answer: A`); else, when `options` are given, the option
    whose text the output starts with; None when nothing."""
    if not output:
        return None
    text = unicodedata.normalize("NFKC", output)  # full-width Ａ-Ｄ
    m = _CHOICE_RE.search(text)
    if m:
        return m.group(1)
    if options:
        low = text.strip().casefold()
        for letter, opt in zip(CHOICES, options, strict=False):
            o = opt.strip().casefold()
            if o and low.startswith(o):
                return letter
    return None


# -------------------------------------------------------------------------------------- classification (SIB)
def cls_prompt(
    text: str,
    *,
    labels: Sequence[str] = SIB_LABELS,
    bridge: str | None = None,
    bridge_text: str | None = None,
    demos: Sequence[ClsDemo] = (),
) -> str:
    """SIB-200 topic classification: label list, then `Text:`/`Topic:` pairs; with a bridge the text's
    translation into it is shown too."""
    if not text.strip():
        raise ValueError("text is empty")
    if (bridge is None) != (bridge_text is None):
        raise ValueError("give both bridge and bridge_text, or neither")
    lines = [f"Topics: {', '.join(labels)}", ""]
    for d in demos:
        if d.label not in labels:
            raise ValueError(f"demo label {d.label!r} not in labels")
        lines += [f"Text: {_one_line(d.text)}", f"Topic: {d.label}", ""]
    lines.append(f"Text: {_one_line(text)}")
    if bridge is not None:
        lines.append(f"Text ({_name(bridge)}): {_one_line(bridge_text or '')}")
    lines.append("Topic:")
    return "\n".join(lines)


def parse_label(output: str, labels: Sequence[str] = SIB_LABELS) -> str | None:
    """The label mentioned first in the output (case-insensitive; a part of a slashed label such as
    "science" or "technology" counts for "science/technology"); None when none."""
    if not output:
        return None
    text = unicodedata.normalize("NFKC", output).casefold()
    best: tuple[int, int, str] | None = None
    for label in labels:
        for alias in {label, *label.split("/")}:
            a = alias.strip().casefold()
            if not a:
                continue
            m = re.search(rf"(?<!\w){re.escape(a)}(?!\w)", text)
            if m:
                key = (m.start(), -len(a), label)
                if best is None or key < best:
                    best = key
    return best[2] if best else None


__all__ = [
    "ARROW",
    "CHAIN_DELIMITERS",
    "CHOICES",
    "SIB_LABELS",
    "ClsDemo",
    "Demo",
    "MRCDemo",
    "cls_prompt",
    "escape_span",
    "mrc_prompt",
    "normalize_word",
    "parse_choice",
    "parse_label",
    "parse_sentence",
    "parse_word",
    "parse_word_partial",
    "sentence_prompt",
    "unescape_span",
    "word_fold",
    "word_prompt",
]
