"""What the Alarms page reads: the shared alarm store, how fresh it is, and its rows as tables."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from anomaly.alarmstate import AlarmRow, AlarmStore, open_alarm_store
from ui import data

STATE_LABELS = {
    "unack": "Unacknowledged",
    "ack": "Acknowledged",
    "rtn_unack": "Cleared, unacknowledged",
    "normal": "Normal",
    "shelved": "Shelved",
    "suppressed": "Suppressed by design",
    "out_of_service": "Out of service",
}


@st.cache_resource
def store() -> AlarmStore:
    """One connection to the alarm store per UI process (the stack writes the same file)."""
    return open_alarm_store(data.settings())


@dataclass(frozen=True)
class Freshness:
    """How old the detectors' last evaluation is: alarm states are live only while it is recent."""

    evaluated_ns: int | None
    age_s: float | None
    live: bool

    def describe(self) -> str:
        if self.evaluated_ns is None:
            return "the detectors have not evaluated since the stack last started (or it is not running)"
        when = pd.Timestamp(self.evaluated_ns, tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"last evaluated {when}, {self.age_s:.0f} s ago"


def freshness(now_ns: int | None = None) -> Freshness:
    """Whether the stack's detectors evaluated recently (within three cycles, at least 15 s)."""
    now = time.time_ns() if now_ns is None else now_ns
    evaluated = store().evaluated_ns()
    if evaluated is None:
        return Freshness(None, None, False)
    age = max(0.0, (now - evaluated) / 1e9)
    limit = max(3 * data.settings().twin.interval_s, 15.0)
    return Freshness(evaluated, age, age <= limit)


def _time(ns: int | None) -> pd.Timestamp | None:
    return pd.Timestamp(ns, tz="UTC") if ns else None


def table(rows: list[AlarmRow]) -> pd.DataFrame:
    """The alarm table as the operator reads it (one row per alarm, newest raise first within a
    priority)."""
    columns = [
        "key",
        "priority",
        "state",
        "raised",
        "substation",
        "device",
        "point",
        "message",
        "count",
        "acknowledged by",
        "shelved until",
        "note",
    ]
    out = []
    for r in rows:
        note = ""
        if r.state == "shelved":
            until = _time(r.shelved_until_ns)
            note = f"shelved by {r.shelved_by} until {until:%m-%d %H:%M} UTC: {r.shelve_reason}" if until else ""
        elif r.state == "suppressed":
            note = r.suppressed_reason
        elif r.chattering:
            note = f"chattering: {r.count} occurrences folded into this alarm"
        elif r.acked_by:
            note = f"acknowledged by {r.acked_by}" + (f": {r.ack_comment}" if r.ack_comment else "")
        out.append(
            {
                "key": r.key_text,
                "priority": str(r.priority),
                "state": STATE_LABELS.get(str(r.state), str(r.state)),
                "raised": _time(r.last_raised_ns),
                "substation": r.substation,
                "device": r.device,
                "point": r.point,
                "message": r.message,
                "count": r.count,
                "acknowledged by": r.acked_by,
                "shelved until": _time(r.shelved_until_ns),
                "note": note,
            }
        )
    return pd.DataFrame(out, columns=columns)
