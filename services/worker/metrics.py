"""Prometheus metrics of one worker app, in its own CollectorRegistry (two apps in a process never clash)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 64)


class WorkerMetrics:
    """Requests, tokens, latencies, batch sizes and queue depth (read live from the engine)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("bridgex_worker_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("bridgex_worker_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generated_tokens = Counter("bridgex_worker_generated_tokens", "Tokens generated", registry=r)
        self.latency = Histogram("bridgex_worker_request_latency_seconds", "End-to-end request latency",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("bridgex_worker_queue_wait_seconds", "Time from enqueue to batch start",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_time = Histogram("bridgex_worker_batch_seconds", "Wall time of one generation batch",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("bridgex_worker_batch_size", "Sequences per forward step (running batch)",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_starts = Counter("bridgex_worker_batches", "Batches started (joins not counted)", registry=r)
        self.decode_steps = Counter("bridgex_worker_decode_steps", "Decode steps run", registry=r)
        self.queue_depth = Gauge("bridgex_worker_queue_depth", "Requests waiting for a batch", registry=r)
        self.running = Gauge("bridgex_worker_running_requests", "Requests in the running batch", registry=r)

    def bind(self, queue_depth: Callable[[], float], running: Callable[[], float]) -> None:
        self.queue_depth.set_function(queue_depth)
        self.running.set_function(running)

    def observe_batch(self, waits: Sequence[float], *, new_batch: bool) -> None:
        """Requests leaving the queue: into a new batch, or joining the running one."""
        if new_batch:
            self.batch_starts.inc()
        for w in waits:
            self.queue_wait.observe(w)

    def observe_step(self, rows: int) -> None:
        self.batch_size.observe(rows)

    def observe_batch_time(self, seconds: float, steps: int) -> None:
        self.batch_time.observe(seconds)
        self.decode_steps.inc(steps)

    def observe_done(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.generated_tokens.inc(completion_tokens)
