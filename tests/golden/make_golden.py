"""Write the golden state-estimation cases: small networks built here, their exact power-flow
state as the known answer, and measurement sets taken from that power flow.

Run `python tests/golden/make_golden.py` to regenerate; the files are committed, so the tests
check the estimators against fixed answers, not against a power flow run at test time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandapower as pp

HERE = Path(__file__).parent


def feeder_with_trafo() -> pp.pandapowerNet:
    """110/20 kV transformer (Dyn5, 150° shift) feeding a 4-bus radial 20 kV feeder with PV."""
    net = pp.create_empty_network(sn_mva=1.0)
    hv = pp.create_bus(net, 110, name="HV")
    mv = [pp.create_bus(net, 20, name=f"MV{i}") for i in range(5)]
    pp.create_ext_grid(net, hv, vm_pu=1.02)
    pp.create_transformer_from_parameters(
        net,
        hv,
        mv[0],
        sn_mva=25,
        vn_hv_kv=110,
        vn_lv_kv=20,
        vkr_percent=0.4,
        vk_percent=12,
        pfe_kw=14,
        i0_percent=0.07,
        shift_degree=150,
    )
    for a, b, km in ((0, 1, 2.0), (1, 2, 1.5), (2, 3, 3.0), (1, 4, 2.5)):
        pp.create_line_from_parameters(
            net, mv[a], mv[b], km, r_ohm_per_km=0.16, x_ohm_per_km=0.12, c_nf_per_km=280, max_i_ka=0.36
        )
    for b, p, q in ((1, 1.2, 0.3), (2, 0.8, 0.2), (3, 1.5, 0.4), (4, 0.6, 0.1)):
        pp.create_load(net, mv[b], p_mw=p, q_mvar=q)
    pp.create_sgen(net, mv[3], p_mw=0.9, q_mvar=0.0)
    return net


def ring_with_open_point() -> pp.pandapowerNet:
    """A 10 kV ring of five buses, open at one line end (a normally-open point), with a busbar
    section joined by a closed bus-bus switch (fused by the estimators) and a zero-injection bus."""
    net = pp.create_empty_network(sn_mva=1.0)
    src = pp.create_bus(net, 10, name="source")
    section = pp.create_bus(net, 10, name="section")
    ring = [pp.create_bus(net, 10, name=f"R{i}") for i in range(4)]
    pp.create_ext_grid(net, src, vm_pu=1.0)
    pp.create_switch(net, src, section, et="b", closed=True)
    prev = section
    lines = []
    for b in ring:
        lines.append(
            pp.create_line_from_parameters(
                net, prev, b, 1.2, r_ohm_per_km=0.3, x_ohm_per_km=0.1, c_nf_per_km=250, max_i_ka=0.2
            )
        )
        prev = b
    back = pp.create_line_from_parameters(
        net, ring[-1], src, 1.0, r_ohm_per_km=0.3, x_ohm_per_km=0.1, c_nf_per_km=250, max_i_ka=0.2
    )
    pp.create_switch(net, src, back, et="l", closed=False, name="normally open point")
    for b, p in ((ring[0], 0.5), (ring[2], 0.7), (ring[3], 0.4)):  # ring[1] has nothing: zero injection
        pp.create_load(net, b, p_mw=p, q_mvar=p * 0.25)
    return net


def _measurements(net: pp.pandapowerNet, plan: list[tuple]) -> list[dict]:
    out = []
    for meas_type, element_type, element, side, sigma in plan:
        if element_type == "bus":
            column = {"v": "vm_pu", "p": "p_mw", "q": "q_mvar"}[meas_type]
            value = float(net.res_bus.at[element, column])
        else:
            unit = {"p": "mw", "q": "mvar", "i": "ka"}[meas_type]
            value = float(getattr(net, f"res_{element_type}").at[element, f"{meas_type}_{side}_{unit}"])
        out.append(
            {
                "meas_type": meas_type,
                "element_type": element_type,
                "element": element,
                "side": side,
                "value": value,
                "std_dev": sigma,
                "device": f"{element_type}{element}",
                "point": f"{meas_type}{side or ''}",
            }
        )
    return out


def _write(name: str, net: pp.pandapowerNet, plan: list[tuple], description: str, **extra: object) -> None:
    pp.runpp(net, calculate_voltage_angles=True)
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    pp.to_json(net, str(folder / "network.json"))
    state = {
        int(b): {"vm_pu": float(r.vm_pu), "va_degree": float(r.va_degree)} for b, r in net.res_bus.dropna().iterrows()
    }
    case = {"description": description, "measurements": _measurements(net, plan), "expected_state": state, **extra}
    (folder / "case.json").write_text(json.dumps(case, indent=1) + "\n")


def main() -> None:
    net = feeder_with_trafo()
    plan = [
        ("v", "bus", 0, None, 0.004),
        ("v", "bus", 4, None, 0.004),
        ("v", "bus", 5, None, 0.004),
        ("p", "trafo", 0, "hv", 0.05),
        ("q", "trafo", 0, "hv", 0.05),
        ("p", "trafo", 0, "lv", 0.05),
        ("q", "trafo", 0, "lv", 0.05),
        ("p", "line", 0, "from", 0.03),
        ("q", "line", 0, "from", 0.03),
        ("i", "line", 0, "from", 0.002),
        ("p", "line", 3, "from", 0.03),
        ("q", "line", 3, "from", 0.03),
    ]
    plan += [(t, "bus", b, None, 0.1) for b in (2, 3, 4, 5) for t in ("p", "q")]
    _write(
        "feeder_trafo",
        net,
        plan,
        "radial feeder behind a 150° transformer; exact measurements, so the WLS state is the power-flow state",
        tolerance_pu=1e-6,
    )
    net = ring_with_open_point()
    plan = [
        ("v", "bus", 0, None, 0.004),
        ("v", "bus", 4, None, 0.004),
        ("p", "line", 0, "from", 0.02),
        ("q", "line", 0, "from", 0.02),
        ("p", "line", 2, "from", 0.02),
        ("q", "line", 2, "from", 0.02),
    ]
    plan += [(t, "bus", b, None, 0.05) for b in (2, 4, 5) for t in ("p", "q")]
    plan += [(t, "bus", 3, None, 1e-4) for t in ("p", "q")]  # zero injection
    _write(
        "ring_open_point",
        net,
        plan,
        "ring open at a line end (auxiliary bus), fused busbar sections, a zero-injection bus",
        tolerance_pu=1e-6,
    )
    net = feeder_with_trafo()
    plan_bad = plan_feeder = [("v", "bus", b, None, 0.002) for b in range(6)]
    plan_feeder += [(t, "bus", b, None, 0.01) for b in (2, 3, 4, 5) for t in ("p", "q")]
    plan_feeder += [(t, "line", k, "from", 0.01) for k in range(4) for t in ("p", "q")]
    plan_feeder += [(t, "line", k, "to", 0.01) for k in range(4) for t in ("p", "q")]
    plan_feeder += [("p", "trafo", 0, "lv", 0.01), ("q", "trafo", 0, "lv", 0.01)]
    _write(
        "feeder_bad_data",
        net,
        plan_bad,
        "redundant metering with one gross error: line 2's P at its from "
        "end reads 20 σ high and must be the one identified",
        bias={"device": "line2", "point": "pfrom", "sigmas": 20.0},
        suspect="line2/pfrom",
        tolerance_pu=1e-3,
    )


if __name__ == "__main__":
    main()
