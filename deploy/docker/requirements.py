"""Print pyproject's core requirements plus the given extras' (self-references like `bridgex[ml]` expanded).

Docker builds install these before copying the source: the dependency layer stays cached while code changes.
Usage: python requirements.py pyproject.toml api,ops > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib

SELF = re.compile(r"^bridgex\[(?P<extras>[^\]]+)\]\s*$")


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """Core dependencies plus each extra's, recursively, in first-seen order without duplicates."""
    with open(pyproject, "rb") as fh:
        project = tomllib.load(fh)["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()

    def add(extra: str) -> None:
        if extra in seen:
            return
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; pyproject has: {', '.join(sorted(optional))}")
        seen.add(extra)
        for req in optional[extra]:
            match = SELF.match(req)
            if match:
                for sub in match["extras"].split(","):
                    add(sub.strip())
            elif req not in out:
                out.append(req)

    for extra in extras:
        add(extra)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print("\n".join(requirements(sys.argv[1], [e.strip() for e in sys.argv[2].split(",") if e.strip()])))
