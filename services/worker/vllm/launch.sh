#!/bin/sh
# GPU generation worker: vLLM's OpenAI server configured from BRIDGEX_* env
# (BRIDGEX_MODEL, BRIDGEX_SERVED_MODEL_NAME, BRIDGEX_MAX_MODEL_LEN, BRIDGEX_WORKER_HOST, BRIDGEX_WORKER_PORT, ...).
# Extra arguments are passed on to `vllm serve`, e.g. `launch.sh --tensor-parallel-size 2`.
set -eu
exec python -m services.worker.vllm "$@"
