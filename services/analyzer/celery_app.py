"""The analyzer's Celery app, started as
`celery -A services.analyzer.celery_app worker --pool=solo --concurrency=1 -Q analyze`.

One worker process per GPU (solo pool), late acks + reject on worker lost (a `kill -9` redelivers the task,
after the broker's visibility timeout), prefetch 1, JSON only (never pickle). Nothing heavy is imported or
loaded here: models are loaded lazily inside the worker process by the tasks.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_init

from services.analyzer.config import get_settings
from services.common.config import ServiceSettings
from services.common.priority import lower_priority


def make_app(settings: ServiceSettings | None = None) -> Celery:
    s = settings or get_settings()
    app = Celery(
        "bridgex-analyzer",
        broker=s.broker,
        backend=s.backend,
        include=["services.analyzer.tasks", "services.analyzer.data_tasks", "services.analyzer.announce"],
    )
    vt = int(s.visibility_timeout_s)
    transport: dict[str, object] = {"visibility_timeout": vt}
    if vt < 200:
        # kombu sweeps unacked messages every interval x throttle s (100 s by default): with a short
        # visibility timeout (tests, small jobs) sweep often enough that a lost job comes back promptly
        transport |= {"unacked_restore_interval": max(1, vt // 2), "unacked_restore_throttle": 1}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_default_queue=s.analyze_queue,
        task_routes={"bridgex.*": {"queue": s.analyze_queue}},
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=s.job_ttl_s,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


# a job sends thousands of generation requests (gold filter, dev validation): one INFO line each from httpx
# floods the log and costs CPU; failures still surface through the job's own messages
logging.getLogger("httpx").setLevel(logging.WARNING)
app = make_app()


@worker_init.connect
def _batch_priority(**_: object) -> None:
    """Run the analyzer below the gateway's priority (analyzer_nice), before any model thread exists."""
    nice = lower_priority(get_settings().analyzer_nice)
    logging.getLogger(__name__).info("analyzer niceness %d", nice)
