"""Overvoltage from PV surplus: a sunny hour on a feeder with more PV than the operator's model
knows; every PV unit of the feeder produces a multiple of its nominal output (raised at the first
step until the feeder's highest voltage passes a drawn 1.055-1.08 pu) and the voltage rises along
the feeder. The label names the bus where the voltage rose most."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, GridEvent, register


@register
class Overvoltage(GridEvent):
    name = "overvoltage"
    hours = (1.0, 4.0)
    start_hours = (10, 13)

    def draw(self, ctx: Any, rng: np.random.Generator, start: int, end: int) -> Fault | None:
        feeders = [head for head, sgens in ctx.feeder_pv.items() if sgens]
        if not feeders:
            return None
        head = int(rng.choice(feeders))
        buses = sorted(ctx.feeders[head])
        fault = Fault(self.name, start, end, "bus", int(buses[-1]))
        fault.params = {
            "feeder_head": head,
            "factor": float(rng.uniform(1.6, 2.6)),
            "target_vm_pu": round(float(rng.uniform(1.055, 1.08)), 4),
            "max_vm_pu": 0.0,
        }
        return fault

    def apply(self, fault: Fault, net: Any, ctx: Any) -> None:
        sgens = ctx.feeder_pv[fault.params["feeder_head"]]
        net.sgen.loc[sgens, "p_mw"] = ctx.nominal_sgen_p.loc[sgens].to_numpy() * fault.params["factor"]

    def observe(self, fault: Fault, net: Any, ctx: Any) -> bool:
        """At the first step, raise the surplus until the feeder's highest voltage passes the drawn
        target (at most 12 × nominal); then name the feeder bus with the highest voltage."""
        vm = net.res_bus.vm_pu.reindex(sorted(ctx.feeders[fault.params["feeder_head"]]))
        if not vm.notna().any():
            return False
        peak = float(vm.max())
        if not fault.params.get("calibrated"):
            if peak < fault.params["target_vm_pu"] and fault.params["factor"] < 12.0:
                fault.params["factor"] = min(12.0, fault.params["factor"] * 1.5)
                return True
            fault.params["calibrated"] = True
        if peak > fault.params["max_vm_pu"]:
            fault.params["max_vm_pu"] = round(peak, 5)
            fault.element = int(vm.idxmax())
        return False
