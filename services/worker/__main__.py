"""`python -m services.worker [--print] [extra vLLM flags]`: start vLLM's OpenAI server from BRIDGEX_* settings.

`--print` shows the command and exits. Host and port: BRIDGEX_WORKER_HOST / BRIDGEX_WORKER_PORT, else
worker_url's port (8001). Extra flags go to vLLM unchanged (e.g. `--tensor-parallel-size 2`).
"""

from __future__ import annotations

import os
import sys

from services.worker.config import WorkerSettings
from services.worker.launch import VllmMissing, plan


def main(argv: list[str]) -> int:
    extra = [a for a in argv if a != "--print"]
    try:
        p = plan(WorkerSettings(), extra=extra)
    except VllmMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "--print" in argv:
        print(p.command())
        return 0
    for note in p.notes:
        print(f"bridgex worker: {note}", file=sys.stderr, flush=True)
    print(
        f"bridgex worker: serving {p.identity.model_id} ({p.identity.revision}, weights {p.identity.weight_hash[:12]})",
        file=sys.stderr,
        flush=True,
    )
    os.execve(sys.executable, [sys.executable, *p.argv], {**os.environ, **p.env})
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
