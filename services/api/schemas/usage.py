"""Response models of GET /usage and GET /usage/keys."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class UsageCounts(BaseModel):
    """What succeeded (README "Usage and quotas"): translations (a batch: one per item with a result), the
    characters of their source `text`, the tokens the generation worker produced for them, and analyses
    submitted (those `auto` enqueues are charged to nobody)."""

    requests: int = 0
    characters: int = 0
    generated_tokens: int = 0
    analyses: int = 0


class PeriodUsage(UsageCounts):
    period_start: datetime
    period_resets_at: datetime


class QuotaStatus(BaseModel):
    chars_per_day: int = Field(..., description="The key's daily quota (BRIDGEX_KEY_QUOTAS).")
    characters_used: int = Field(..., description="Characters today (UTC), requests in flight included.")
    characters_remaining: int
    period_resets_at: datetime = Field(..., description="The next UTC midnight.")


class KeyUsage(BaseModel):
    key_id: str = Field(..., description="The key's id (a digest prefix; never the key).")
    configured: bool = Field(..., description="Whether the key is configured now (BRIDGEX_API_KEYS).")
    minute: PeriodUsage
    today: PeriodUsage = Field(..., description="The current UTC day.")
    total: UsageCounts
    quota: QuotaStatus | None = Field(None, description="Set when the key has a quota.")
    period_resets_at: datetime = Field(..., description="When today's counters (and the quota) start again.")


class UsageList(BaseModel):
    keys: list[KeyUsage] = Field(..., description="Configured keys first, then others that have counters.")
