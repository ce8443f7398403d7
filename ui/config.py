"""The UI's configuration."""

from __future__ import annotations

from pydantic import Field

from gridverse.configbase import Port, Strict


class UiConfig(Strict):
    address: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="address Streamlit binds; loopback by default (0.0.0.0 exposes it to every network)",
    )
    port: Port = 8501
    refresh_s: float = 3.0
