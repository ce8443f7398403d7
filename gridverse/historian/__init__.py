"""The historian: where points, estimates and alarms are stored. One interface, two backends."""

from gridverse.historian.base import Historian, HistorianError, HistorianRejected, open_historian

__all__ = ["Historian", "HistorianError", "HistorianRejected", "open_historian"]
