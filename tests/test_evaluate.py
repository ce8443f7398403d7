"""Event-level evaluation on hand-made cases whose answers are known by construction."""

from __future__ import annotations

import pandapower as pp
import pandas as pd
import pytest

from anomaly.dataset import ALARMS_COLUMNS, LABELS_COLUMNS
from anomaly.evaluate import EvaluationConfig, Topology, evaluate

T0 = pd.Timestamp("2016-06-01T00:00:00Z")
STEP = pd.Timedelta(minutes=15)
DAY = (T0, T0 + pd.Timedelta(days=1))


def at(k: float) -> pd.Timestamp:
    return T0 + k * STEP


def labels(*rows: tuple) -> pd.DataFrame:
    """rows: (start_sample, end_sample, type, element_type, element, point)."""
    out = pd.DataFrame(
        [(at(s), at(e), t, et, el, p) for s, e, t, et, el, p in rows],
        columns=LABELS_COLUMNS,
    )
    out["element"] = out.element.astype("Int64")
    return out


def alarms(*rows: tuple) -> pd.DataFrame:
    """rows: (start_sample, end_sample, type, point, element_type, element)."""
    out = pd.DataFrame(
        [(at(s), at(e), t, p, et, el, 1.0) for s, e, t, p, et, el in rows],
        columns=ALARMS_COLUMNS,
    )
    out["element"] = out.element.astype("Int64")
    return out


def grid() -> Topology:
    """MV bus 0 -trafo 0- LV busbar 1; feeder A: lines 0 (1→2), 1 (2→3), load at 3; feeder B: line 2 (1→4), PV at 4."""
    net = pp.create_empty_network()
    b = [pp.create_bus(net, vn_kv=20.0 if i == 0 else 0.4) for i in range(5)]
    pp.create_ext_grid(net, b[0])
    pp.create_transformer(net, b[0], b[1], std_type="0.4 MVA 20/0.4 kV")
    for f, t in ((1, 2), (2, 3), (1, 4)):
        pp.create_line(net, b[f], b[t], 0.2, std_type="NAYY 4x150 SE")
    pp.create_load(net, b[3], p_mw=0.02)
    pp.create_sgen(net, b[4], p_mw=0.03)
    points = pd.DataFrame(
        [
            ("T0.P", "trafo", 0, "lv", "p_mw"),
            ("L0.I", "line", 0, "from", "i_ka"),
            ("B3.V", "bus", 3, "", "v_pu"),
            ("L2.I", "line", 2, "from", "i_ka"),
            ("B4.V", "bus", 4, "", "v_pu"),
            ("PV4.P", "sgen", 0, "", "p_mw"),
        ],
        columns=["point", "element_type", "element", "side", "quantity"],
    ).set_index("point")
    return Topology(net, points)


def run(lab: pd.DataFrame, alm: pd.DataFrame, grace: int = 2, topology: Topology | None = None):
    return evaluate(lab, alm, topology=topology, period=DAY, config=EvaluationConfig(grace_samples=grace))


def test_alarm_before_the_event_is_a_false_alarm_and_the_event_is_missed() -> None:
    report = run(labels((40, 44, "stuck", "bus", 3, "B3.V")), alarms((10, 12, "stuck", "B3.V", "bus", 3)))
    assert (report.found, report.false_alarm_events, report.true_alarm_events) == (0, 1, 0)
    assert report.recall == 0.0 and report.precision == 0.0 and report.f1 == 0.0
    assert report.false_alarms_per_day == pytest.approx(1.0)
    # 3 samples in alarm out of 96 - (5 label + 2 grace) clean samples
    assert report.clean_time_in_alarm == pytest.approx(3 / 89)


def test_one_alarm_spanning_two_events_finds_both_and_is_one_true_alarm_event() -> None:
    lab = labels((10, 12, "drift", "bus", 3, "B3.V"), (20, 22, "spike", "bus", 3, "B3.V"))
    report = run(lab, alarms((11, 21, "drift", "B3.V", "bus", 3)))
    assert (report.found, report.alarm_events, report.true_alarm_events) == (2, 1, 1)
    assert report.precision == 1.0 and report.recall == 1.0 and report.f1 == 1.0
    assert report.events.delay_samples.tolist() == [1.0, 0.0]  # the second was already in alarm
    assert report.median_delay_samples == pytest.approx(0.5)
    assert report.recall_by_type["drift"]["recall"] == 1.0 and report.recall_by_type["spike"]["recall"] == 1.0


def test_rows_of_one_point_merge_into_one_alarm_event() -> None:
    alm = alarms(*[(s, e, "spike", "B3.V", "bus", 3) for s, e in ((10, 10), (11, 12), (50, 50))])
    report = run(labels((10, 12, "spike", "bus", 3, "B3.V")), alm)
    assert (report.alarm_events, report.true_alarm_events, report.false_alarm_events) == (2, 1, 1)
    assert report.alarm_load["alarms"] == 3  # the operator saw three raises


@pytest.mark.parametrize(("start", "grace", "found"), [(12, 2, True), (13, 2, False), (13, 3, True)])
def test_late_alarm_counts_only_within_the_grace_period(start: int, grace: int, found: bool) -> None:
    lab = labels((5, 10, "dropout", "line", 0, "L0.I"))
    report = run(lab, alarms((start, start + 1, "dropout", "L0.I", "line", 0)), grace=grace)
    assert report.found == int(found)
    assert report.false_alarm_events == int(not found)
    if found:
        assert report.median_delay_samples == pytest.approx(start - 5)
        assert report.median_delay_s == pytest.approx((start - 5) * 900)


def test_alarm_naming_nothing_is_a_false_alarm_even_during_an_event() -> None:
    lab = labels((10, 12, "stuck", "bus", 3, "B3.V"))
    report = run(lab, alarms((10, 12, "stuck", "", "", None)))
    assert (report.found, report.false_alarm_events) == (0, 1)


def test_alarm_on_another_point_does_not_find_a_measurement_fault() -> None:
    lab = labels((10, 12, "stuck", "bus", 3, "B3.V"))
    report = run(lab, alarms((10, 12, "stuck", "B4.V", "bus", 4)), topology=grid())
    assert (report.found, report.false_alarm_events) == (0, 1)


def test_points_that_physically_see_a_line_outage_find_it_and_others_do_not() -> None:
    topo = grid()
    lab = labels((10, 20, "line_outage", "line", 1, ""))
    # feeder A's head current, a voltage on feeder A and the transformer see it; localisation is not exact
    for point in ("L0.I", "B3.V", "T0.P"):
        report = run(lab, alarms((11, 12, "line_outage", point, "", None)), topology=topo)
        assert (report.found, report.false_alarm_events) == (1, 0), point
        assert report.localisation == 0.0
    # feeder B's points do not
    for point in ("L2.I", "B4.V", "PV4.P"):
        report = run(lab, alarms((11, 12, "line_outage", point, "", None)), topology=topo)
        assert (report.found, report.false_alarm_events) == (0, 1), point
    # naming the line itself is exact
    report = run(lab, alarms((11, 12, "line_outage", "", "line", 1)), topology=topo)
    assert report.found == 1 and report.localisation == 1.0
    # without the network only exact naming counts
    report = run(lab, alarms((11, 12, "line_outage", "L0.I", "", None)))
    assert report.found == 0 and report.notes


def test_overheating_is_seen_by_the_transformer_and_overvoltage_by_voltages_and_generators() -> None:
    topo = grid()
    hot = labels((10, 20, "overheating", "trafo", 0, ""))
    assert run(hot, alarms((12, 14, "x", "T0.P", "", None)), topology=topo).found == 1
    assert run(hot, alarms((12, 14, "x", "B3.V", "", None)), topology=topo).found == 0
    over = labels((10, 20, "overvoltage", "bus", 4, ""))
    for point, found in (("B3.V", 1), ("PV4.P", 1), ("T0.P", 1), ("L0.I", 0)):
        assert run(over, alarms((12, 14, "x", point, "", None)), topology=topo).found == found, point


def test_eemua_alarm_load_floods_and_chattering() -> None:
    rows = [(0, 0, "stuck", f"P{i}", "", None) for i in range(12)]  # 12 raises in one sample: a flood
    alm = alarms(*rows)
    chatter = pd.DataFrame(
        [
            (T0 + pd.Timedelta(seconds=s), T0 + pd.Timedelta(seconds=s + 5), "stuck", "B3.V", "bus", 3, 1.0)
            for s in (0, 20, 40)
        ],
        columns=ALARMS_COLUMNS,
    )
    chatter["element"] = chatter.element.astype("Int64")
    load = run(labels(), pd.concat([alm, chatter], ignore_index=True)).alarm_load
    assert load["alarms"] == 15
    assert load["per_10min_peak"] == 15
    assert load["per_10min_avg"] == pytest.approx(15 / 144)
    assert load["flood_windows"] == 1
    assert load["chattering_alarms"] == 1


def test_no_alarms_no_labels_gives_no_believable_zero() -> None:
    report = run(labels(), alarms())
    assert report.precision is None and report.recall is None and report.f1 is None
    assert report.median_delay_samples is None
    assert report.false_alarms_per_day == 0.0 and report.clean_time_in_alarm == 0.0


def test_pooled_figures_of_two_periods_are_taken_over_every_event_and_day() -> None:
    from anomaly.evaluate import pool

    one = run(labels((10, 12, "stuck", "bus", 3, "B3.V")), alarms((11, 12, "stuck", "B3.V", "bus", 3)))
    two = run(labels((10, 12, "spike", "bus", 3, "B3.V")), alarms((50, 51, "spike", "B3.V", "bus", 3)))
    pooled = pool([one, two])
    assert (pooled["labels"], pooled["found"], pooled["alarm_events"], pooled["false_alarm_events"]) == (2, 1, 2, 1)
    assert pooled["f1"] == pytest.approx(0.5) and pooled["days"] == pytest.approx(2.0)
    assert pooled["false_alarms_per_day"] == pytest.approx(0.5)
    assert pooled["recall_by_type"]["stuck"]["recall"] == 1.0 and pooled["recall_by_type"]["spike"]["recall"] == 0.0
    assert pooled["clean_time_in_alarm"] == pytest.approx(2 / (2 * 91))  # 96 samples less 3 labelled and 2 grace
    assert pooled["median_delay_samples"] == pytest.approx(1.0)


def test_labels_without_any_alarm_score_f1_zero_with_precision_unknown() -> None:
    report = run(labels((10, 12, "stuck", "bus", 3, "B3.V")), alarms())
    assert report.precision is None and report.recall == 0.0 and report.f1 == 0.0


def test_an_injection_is_seen_by_the_points_it_falsified() -> None:
    base = grid()
    attacked = {("fdia", at(10).strftime("%Y-%m-%dT%H:%M:%SZ")): {"L2.I", "B4.V"}}
    topo = Topology(base.net, base.points, attacked)
    lab = labels((10, 20, "fdia", "bus", 3, ""))
    assert run(lab, alarms((12, 13, "x", "L2.I", "", None)), topology=topo).found == 1
    assert run(lab, alarms((12, 13, "x", "L2.I", "", None)), topology=base).found == 0
