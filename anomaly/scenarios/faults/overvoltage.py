"""Overvoltage from PV surplus: a sunny hour on a feeder with more PV than the operator's model
knows; every PV unit of the feeder produces well above its nominal output and the voltage rises
along the feeder. The label names the bus where the voltage rose most."""

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
        fault.params = {"feeder_head": head, "factor": float(rng.uniform(1.6, 2.6)), "max_vm_pu": 0.0}
        return fault

    def apply(self, fault: Fault, net: Any, ctx: Any) -> None:
        sgens = ctx.feeder_pv[fault.params["feeder_head"]]
        net.sgen.loc[sgens, "p_mw"] = ctx.nominal_sgen_p.loc[sgens].to_numpy() * fault.params["factor"]

    def observe(self, fault: Fault, net: Any, ctx: Any) -> None:
        """After each power flow of the window: name the feeder bus with the highest voltage."""
        vm = net.res_bus.vm_pu.reindex(sorted(ctx.feeders[fault.params["feeder_head"]]))
        if vm.notna().any() and float(vm.max()) > fault.params["max_vm_pu"]:
            fault.params["max_vm_pu"] = round(float(vm.max()), 5)
            fault.element = int(vm.idxmax())
