"""The method configuration each process serves, published in Redis, so that a gateway and an analyzer that
disagree say so instead of missing every `auto` lookup in silence.

The gateway looks up `auto` bridges under the fingerprint of a default `POST /analyze` built from its own
settings; the analyzer computes the rankings with its own. Both derive the method parameters from the same
map (`analysis.SPEC_SETTINGS`), so two processes with the same parameters agree. Each analyzer worker
publishes its parameters when it starts (`redis_keys.served_config`, role "analyzer"); the gateway compares
its own with them in `/ready`, `GET /bridges` and `auto` answers, naming the parameters that differ.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from typing import Any

from bridgex.fingerprint import canonical_json

from services.common import redis_keys
from services.common.analysis import SPEC_SETTINGS
from services.common.config import ServiceSettings

PAIR_INDEPENDENT_EXCLUDED = ("model", "revision")
"""Parts of the key itself (the served model and its revision), not parameters to compare."""


def method_settings(settings: ServiceSettings) -> dict[str, Any]:
    """The method parameters a default analysis of any pair takes from `settings` (JSON values)."""
    raw = {
        name: getattr(settings, attr) for name, attr in SPEC_SETTINGS.items() if name not in PAIR_INDEPENDENT_EXCLUDED
    }
    return json.loads(canonical_json(raw))


def fingerprint(params: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:12]


def announcement(settings: ServiceSettings, role: str, node: str | None = None) -> dict[str, Any]:
    params = method_settings(settings)
    return {
        "role": role,
        "node": node or socket.gethostname(),
        "fingerprint": fingerprint(params),
        "params": params,
        "at": time.time(),
    }


def key(settings: ServiceSettings, role: str) -> str:
    return redis_keys.served_config(settings.model, settings.model_revision, role)


def compare(mine: dict[str, Any], theirs: dict[str, Any] | None, *, me: str, them: str) -> dict[str, Any]:
    """{me: fp, them: fp | None, agree: bool | None, differ: {param: {me: v, them: v}}, detail}. `agree` is None
    when the other side has published nothing (not started yet, or an older version)."""
    out: dict[str, Any] = {me: mine["fingerprint"], them: theirs["fingerprint"] if theirs else None}
    if theirs is None:
        return out | {"agree": None, "differ": {}, "detail": f"no {them} has published its configuration yet"}
    differ = {
        name: {me: mine["params"].get(name), them: theirs["params"].get(name)}
        for name in sorted(set(mine["params"]) | set(theirs["params"]))
        if mine["params"].get(name) != theirs["params"].get(name)
    }
    if not differ:
        return out | {"agree": True, "differ": {}, "detail": "same method configuration"}
    names = ", ".join(f"{n} ({me} {v[me]!r}, {them} {v[them]!r})" for n, v in list(differ.items())[:6])
    return out | {
        "agree": False,
        "differ": differ,
        "detail": f"the {me} and the {them} ({theirs.get('node')}) serve different method configurations: "
        f"{names}. `auto` looks up rankings the {them} never computes; give both the same BRIDGEX_* settings",
    }
