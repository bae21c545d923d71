"""Publish the method configuration this analyzer computes rankings with, when its Celery worker starts
(`services.common.served`): the gateway compares its own with it and says when they differ."""

from __future__ import annotations

import json
import logging
from typing import Any

from celery.signals import worker_ready

from services.common import served

from .config import get_settings
from .tasks import redis_client

log = logging.getLogger(__name__)


def announce(node: str | None = None) -> dict[str, Any]:
    s = get_settings()
    ann = served.announcement(s, "analyzer", node)
    redis_client().set(served.key(s, "analyzer"), json.dumps(ann))
    return ann


@worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    try:
        ann = announce(getattr(sender, "hostname", None))
        log.info("serving method configuration %s", ann["fingerprint"])
    except Exception as exc:  # Redis down at start: the gateway reports "not published", nothing breaks
        log.warning("could not publish the method configuration: %s", exc)
