"""The historian: where points, estimates and alarms are stored. One interface, two backends."""

from gridverse.historian.base import Historian, HistorianError, open_historian

__all__ = ["Historian", "HistorianError", "open_historian"]
