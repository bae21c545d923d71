"""GPU worker = vLLM's own OpenAI server, configured from BridgeX settings (vllm is never imported here)."""

from services.worker.vllm.config import DEFAULT_HUB_ID, render_vllm_args

__all__ = ["DEFAULT_HUB_ID", "render_vllm_args"]
