"""The UI's configuration."""

from __future__ import annotations

from gridverse.configbase import Strict


class UiConfig(Strict):
    port: int = 8501
    refresh_s: float = 3.0
