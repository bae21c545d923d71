"""The gateway's configuration is the project's one `Settings` object (BRIDGEX_* variables); no fork here."""

from __future__ import annotations

from bridgex.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
