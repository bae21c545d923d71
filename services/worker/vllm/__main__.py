"""`python -m services.worker.vllm [--print]`: exec `vllm serve` with arguments from BRIDGEX_* env."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

from bridgex.settings import Settings

from services.worker.vllm.config import render_vllm_args


def main(argv: list[str]) -> int:
    args = render_vllm_args(Settings()) + [a for a in argv if a != "--print"]
    if "--print" in argv:
        print(shlex.join(["vllm", *args]))
        return 0
    exe = shutil.which("vllm")
    if exe is None:
        print("vllm is not installed: this launcher runs in the GPU image (pip install 'bridgex[gpu]')",
              file=sys.stderr)
        return 2
    os.execv(exe, [exe, *args])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
