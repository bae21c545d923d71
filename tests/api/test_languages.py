"""GET /languages: names, native names, targets, and per pair whether `auto` serves a measured bridge (issue 23
item 6). Real stack; the ranking is published through BridgeStore under the served configuration."""

from __future__ import annotations

import redis

from benchmarks.fixtures import publish_fixture
from services.api.core.config import ApiSettings
from services.common.bridges import BridgeStore
from tests.api.conftest import Stack, T


def test_languages_with_targets_and_measured_pairs(stack: Stack) -> None:
    with stack.client() as c:
        before = c.get("/languages", headers=T).json()
        langs = {lang["code"]: lang for lang in before["languages"]}
        assert len(langs) == 15 and langs["ja"]["native"] == "日本語" and langs["sw"]["name"]
        sw_targets = {t["code"]: t for t in langs["sw"]["targets"]}
        assert len(sw_targets) == 14 and "sw" not in sw_targets and not sw_targets["pt"]["measured"]
        publish_fixture(stack.redis.url, stack.env, "sw", "pt")  # a ranking whose HSIC argmax is de
        try:
            after = c.get("/languages", headers=T).json()
            sw = next(lang for lang in after["languages"] if lang["code"] == "sw")
            pt = next(t for t in sw["targets"] if t["code"] == "pt")
            assert pt == {"code": "pt", "measured": True, "served_bridge": "de"}, pt
            assert after["measured_pairs"] == before["measured_pairs"] + 1
            # the other direction is its own pair
            back = next(lang for lang in after["languages"] if lang["code"] == "pt")
            assert not next(t for t in back["targets"] if t["code"] == "sw")["measured"]
        finally:
            s = ApiSettings(_env_file=None, **{"model": stack.env["BRIDGEX_MODEL"]})
            store = BridgeStore(redis.Redis.from_url(stack.redis.url))
            for fp in store.configs(s.model, s.model_revision):
                store.delete(s.model, s.model_revision, fp, "sw", "pt")
