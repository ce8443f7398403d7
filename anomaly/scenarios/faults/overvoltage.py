"""Overvoltage from PV surplus: a sunny spell on a feeder with more PV than the operator's model
knows, at midday. Every PV unit of the feeder produces a multiple of its nominal output; the
multiple is raised (never lowered) at any step of the window where the feeder's highest voltage
is below a drawn 1.105-1.13 pu target, until the feeder's PV at nominal output would equal its
transformer's rating (`MAX_SHARE_OF_TRAFO`: a feeder at the limit of its hosting capacity, whose
rooftops grew far past their registration), so the voltage rise is physical and lasts the window. The label covers only
the steps whose highest feeder voltage truly exceeds the statutory band (`BAND_HIGH_PU`: EN 50160
allows ±10 % at LV and MV, and healthy PV-rich LV feeders do run at 1.05-1.09 pu at midday, so a
tighter planning band would label normal days) and names the bus where the voltage rose most."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, GridEvent, register

#: the voltage band's upper edge a labelled overvoltage exceeds (pu; EN 50160)
BAND_HIGH_PU = 1.10
#: the most the feeder's PV may produce at nominal output, as a share of the largest transformer's rating
MAX_SHARE_OF_TRAFO = 1.0


@register
class Overvoltage(GridEvent):
    name = "overvoltage"
    hours = (1.0, 3.0)
    start_hours = (10, 12)

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
            "target_vm_pu": round(float(rng.uniform(1.105, 1.13)), 4),
            "max_vm_pu": 0.0,
        }
        nominal = float(ctx.nominal_sgen_p.loc[ctx.feeder_pv[head]].clip(lower=0.0).sum())
        rating = float(ctx.net.trafo.sn_mva.max()) if len(ctx.net.trafo) else 0.0
        fault.params["max_factor"] = (
            round(max(fault.params["factor"], MAX_SHARE_OF_TRAFO * rating / nominal), 3) if nominal > 0 else 1.0
        )
        return fault

    def apply(self, fault: Fault, net: Any, ctx: Any) -> None:
        """The feeder's PV at `factor` × what its profile gives this step (no sun, no surplus)."""
        sgens = ctx.feeder_pv[fault.params["feeder_head"]]
        key, step = f"pv_profile:{id(fault)}", ctx.extra.get("step")
        cached = ctx.extra.get(key)
        if cached is None or cached[0] != step:  # the first call of a step sees the profile's values
            cached = ctx.extra[key] = (step, net.sgen.loc[sgens, "p_mw"].to_numpy().copy())
        net.sgen.loc[sgens, "p_mw"] = cached[1] * fault.params["factor"]

    def observe(self, fault: Fault, net: Any, ctx: Any) -> bool:
        """Raise the surplus while the feeder's highest voltage is below the drawn target (at most
        `max_factor` × nominal); then note the step if it exceeds the band and name the feeder bus
        with the highest voltage."""
        vm = net.res_bus.vm_pu.reindex(sorted(ctx.feeders[fault.params["feeder_head"]]))
        if not vm.notna().any():
            return False
        peak = float(vm.max())
        cap = float(fault.params.get("max_factor", 12.0))
        if peak < fault.params["target_vm_pu"] and fault.params["factor"] < cap:
            fault.params["factor"] = min(cap, fault.params["factor"] * 1.25)
            return True
        if peak > BAND_HIGH_PU:
            step = ctx.extra.get("step")  # the step being solved (set by the generator)
            if step is not None:
                over = fault.params.setdefault("over_steps", [])
                if step not in over:
                    over.append(step)
        if peak > fault.params["max_vm_pu"]:
            fault.params["max_vm_pu"] = round(peak, 5)
            fault.element = int(vm.idxmax())
        return False

    def settle(self, fault: Fault, ctx: Any) -> bool:
        """After the simulation: the label spans the first to the last step above the band (False:
        no step exceeded it, so there was no overvoltage to label)."""
        over = sorted(fault.params.pop("over_steps", []))
        if not over:
            return False
        fault.params["labelled_steps"] = [over[0], over[-1]]
        fault.start, fault.end = over[0], over[-1]
        return True
