"""services.common.priority: lowering a process's CPU priority reaches every thread it has and every thread it
starts later, never raises it back, and leaves 0 alone. Each case runs in a fresh interpreter (a niceness cannot
be lowered again by an ordinary user)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import json, os, sys, threading
from services.common.priority import lower_priority
from tests.support import thread_nice

stop = threading.Event()
before = threading.Thread(target=stop.wait); before.start()
got = [lower_priority(int(a)) for a in sys.argv[1:]]
after = threading.Thread(target=stop.wait); after.start()
nice = thread_nice(os.getpid())
stop.set()
print(json.dumps({"returned": got, "threads": nice}))
"""


def run(*levels: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, *map(str, levels)], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is read from /proc")
def test_every_thread_now_and_later_is_lowered() -> None:
    got = run(7)
    assert got["returned"] == [7]
    assert len(got["threads"]) == 3 and set(got["threads"].values()) == {7}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is read from /proc")
def test_never_raised_back_and_zero_changes_nothing() -> None:
    got = run(0, 5, 3, 30)
    assert got["returned"] == [0, 5, 5, 19]  # 3 is below the 5 in force; 30 is capped at the kernel's 19
    assert set(got["threads"].values()) == {19}
