"""UTC timestamps: the one place kabuild reads the wall clock for what it records."""

from __future__ import annotations

import datetime


def utc_now() -> str:
    """ISO 8601, seconds, UTC: what documents record (built_at, started_at, recorded_at)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def utc_stamp() -> str:
    """A compact UTC stamp for directory names that sort in time order."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
