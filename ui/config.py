"""The UI's configuration."""

from __future__ import annotations

from gridverse.configbase import Port, Strict


class UiConfig(Strict):
    port: Port = 8501
    refresh_s: float = 3.0
