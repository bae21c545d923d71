"""Run every benchmark module (`benchmarks/bench_*.py`, each with a `main()`); `python -m benchmarks [name ...]`.

Names are the arguments before the first option (`python -m benchmarks soak --api URL`: `soak`). Modules in
EXPLICIT (long runs) run only when an argument names them (`soak` or `bench_soak`) or their variable is 1."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time

import benchmarks

EXPLICIT = {"bench_soak": "BENCH_SOAK"}  # module -> environment variable that also selects it


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    argv = argv[: next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))]
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    names = [
        n
        for n in names
        if n not in EXPLICIT
        or os.environ.get(EXPLICIT[n]) == "1"
        or any(a in (n, n.removeprefix("bench_")) for a in argv)
    ]
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"--- {name} took {time.perf_counter() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
