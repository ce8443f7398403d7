"""Shared schema of the site description: what a point measures and which network element it belongs to."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from gridverse.configbase import Strict


class Measurand(StrEnum):
    """What physical quantity a point carries; the twin maps it to a network measurement."""

    P = "p"  # active power, W, load convention at the element end
    Q = "q"  # reactive power, var
    I = "i"  # noqa: E741  current magnitude, A
    V = "v"  # phase-to-phase voltage magnitude, V
    CLOSED = "closed"  # breaker/switch position, 1 = closed
    TAP = "tap"  # transformer tap position, steps from neutral
    TEMPERATURE = "temperature"  # degC
    OTHER = "other"


class ElementKind(StrEnum):
    BUS = "bus"
    LINE = "line"
    TRAFO = "trafo"
    SWITCH = "switch"  # a switch of the network's switch table; its device reports a position


class ElementRef(Strict):
    """Which network element a device measures; `side` names the end of a branch."""

    kind: ElementKind
    index: int = Field(ge=0)
    side: Literal["from", "to", "hv", "lv"] | None = None

    @model_validator(mode="after")
    def _side_fits(self) -> ElementRef:
        sides: dict[ElementKind, set[str | None]] = {
            ElementKind.BUS: {None},
            ElementKind.LINE: {"from", "to", None},
            ElementKind.TRAFO: {"hv", "lv", None},
            ElementKind.SWITCH: {None},
        }
        allowed = sides[self.kind]
        if self.side not in allowed:
            raise ValueError(f"side {self.side!r} does not fit a {self.kind.value}; use {allowed}")
        return self
