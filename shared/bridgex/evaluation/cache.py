"""Generation cache: one JSONL line per distinct request, so each generation happens once and reruns resume.

Keyed by the full request (model, prompt, max_tokens, stop, temperature): the bridge step `S:"w"→B:` for a
word is the same string in every condition that uses bridge B, so it is generated once and shared. Appending
one flushed line per result means an interrupted run loses at most the requests in flight; a torn last line
is ignored on reload.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["GenerationCache", "request_key"]


def request_key(model: str, prompt: str, max_tokens: int, stop: tuple[str, ...], temperature: float = 0.0) -> str:
    """Stable content hash of everything that determines a greedy generation."""
    payload = json.dumps([model, prompt, int(max_tokens), list(stop), float(temperature)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class GenerationCache:
    """Append-only JSONL store {key, model, prompt, text, finish_reason}; loaded fully into a dict."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, str] = {}
        self.loaded = 0
        if self.path.exists():
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        row = json.loads(line)
                        self._data[row["key"]] = row["text"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # torn line from an interrupted run
            self.loaded = len(self._data)
        self._fh = self.path.open("a", encoding="utf-8")

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def put(self, key: str, *, model: str, prompt: str, text: str, finish_reason: str | None = None) -> None:
        if key in self._data:
            return
        self._data[key] = text
        row = {"key": key, "model": model, "prompt": prompt, "text": text, "finish_reason": finish_reason}
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
