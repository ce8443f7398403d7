"""Line outage: a line trips (protection, a broken conductor); whatever it fed is de-energised."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, GridEvent, register


@register
class LineOutage(GridEvent):
    name = "line_outage"
    hours = (1.0, 8.0)

    def draw(self, ctx: Any, rng: np.random.Generator, start: int, end: int) -> Fault | None:
        heads = [line for line, _side in ctx.plan.feeder_heads]
        lines = list(ctx.net.line.index[ctx.net.line.in_service])
        if not lines:
            return None
        # a feeder head now and then (the whole feeder goes dark), mostly a section further out
        pool = heads if heads and rng.random() < 0.3 else lines
        return Fault(self.name, start, end, "line", int(rng.choice(pool)))

    def apply(self, fault: Fault, net: Any, ctx: Any) -> None:
        net.line.at[fault.element, "in_service"] = False
