"""IEC 60076-7 hot spot, ageing and loss of life against numbers worked by hand from the
standard's formulas (constants: the 2005 edition's Table 5, ONAN medium/large column:
x 0.8, y 1.3, R 6, τo 210 min, τw 10 min, Δθor 52 K, Hgr 26 K, k11 0.5, k21 2, k22 2)."""

from __future__ import annotations

import pytest

from inspection.thermal import (
    ONAN,
    ONAN_DISTRIBUTION,
    DynamicThermalModel,
    ageing_rate,
    hot_spot_from_top_oil,
    hot_spot_series,
    load_factor,
    loss_of_life_h,
    steady_hot_spot,
    top_oil_rise,
)


def test_rated_load_at_20_degrees_is_the_reference_hot_spot() -> None:
    """K = 1, θa = 20 °C: θh = 20 + 52 + 26 = 98 °C (ONAN), 20 + 55 + 23 = 98 °C (ONAN distribution):
    the temperature at which paper ages at the normal rate, V = 1."""
    assert steady_hot_spot(1.0, 20.0, ONAN) == pytest.approx(98.0)
    assert steady_hot_spot(1.0, 20.0, ONAN_DISTRIBUTION) == pytest.approx(98.0)
    assert ageing_rate(98.0) == pytest.approx(1.0)


def test_steady_state_at_one_and_a_half_times_rated_load() -> None:
    """K = 1.5: top-oil rise 52·((1 + 2.25·6)/7)^0.8 = 52·2.0714^0.8 = 93.11 K; gradient
    26·1.5^1.3 = 44.04 K; θh = 20 + 93.11 + 44.04 = 157.16 °C; V = 2^((157.16 − 98)/6) ≈ 929."""
    assert top_oil_rise(1.5, ONAN) == pytest.approx(93.11, abs=0.01)
    assert steady_hot_spot(1.5, 20.0, ONAN) == pytest.approx(157.16, abs=0.01)
    assert ageing_rate(157.16) == pytest.approx(929.0, rel=0.002)


def test_measured_top_oil_replaces_the_modelled_one() -> None:
    """80 °C measured at K = 0.8: θh = 80 + 26·0.8^1.3 = 80 + 26·0.7482 = 99.45 °C."""
    assert hot_spot_from_top_oil(80.0, 0.8, ONAN) == pytest.approx(99.45, abs=0.01)
    assert load_factor(-300.0, 400.0) == pytest.approx(0.75)  # the measured current's magnitude
    with pytest.raises(ValueError, match="rated"):
        load_factor(100.0, 0.0)


def test_ageing_doubles_every_six_kelvin_and_loss_of_life_sums_it() -> None:
    """104 °C: V = 2; a day at 104 °C costs 48 h of life; a day at 92 °C (V = 0.5) costs 12 h."""
    assert ageing_rate(104.0) == pytest.approx(2.0)
    assert loss_of_life_h([104.0] * 24, 60.0) == pytest.approx(48.0)
    assert loss_of_life_h([92.0] * 96, 15.0) == pytest.approx(12.0)


def test_difference_equations_first_step_after_a_load_step() -> None:
    """Steady at K = 1 (Δθo 52, Δθh1 = k21·26 = 52, Δθh2 = (k21 − 1)·26 = 26), then K = 1.5 for one
    minute, θa 20 °C:
      DΔθo  = 1/(0.5·210)·(93.115 − 52)    = 0.3916  → Δθo  = 52.392
      DΔθh1 = 1/(2·10)·(2·44.045 − 52)     = 1.8045  → Δθh1 = 53.804
      DΔθh2 = 1/((1/2)·210)·(44.045 − 26)  = 0.1719  → Δθh2 = 26.172
      θh = 20 + 52.392 + 53.804 − 26.172 = 100.02 °C."""
    model = DynamicThermalModel(ONAN)
    start = model.step(1.0, 20.0, 0.0)
    assert start.hot_spot_c == pytest.approx(98.0) and start.top_oil_c == pytest.approx(72.0)
    after = model.step(1.5, 20.0, 1.0)
    assert model.state is not None
    assert model.state.delta_theta_o == pytest.approx(52.392, abs=1e-3)
    assert model.state.delta_theta_h1 == pytest.approx(53.804, abs=1e-3)
    assert model.state.delta_theta_h2 == pytest.approx(26.172, abs=1e-3)
    assert after.hot_spot_c == pytest.approx(100.02, abs=0.01)


def test_the_dynamic_model_settles_on_the_steady_state() -> None:
    """A day at K = 1.5 after rated load ends at the steady-state 157.16 °C (τo = 210 min: 7 time
    constants), rising all the way; a measured top oil shifts the hot spot with it."""
    steps = hot_spot_series([1.0] + [1.5] * 1440, [20.0] * 1441, 1.0, ONAN)
    assert steps[-1].hot_spot_c == pytest.approx(157.16, abs=0.05)
    assert all(b.hot_spot_c >= a.hot_spot_c - 1e-9 for a, b in zip(steps, steps[1:], strict=False))
    model = DynamicThermalModel(ONAN)
    model.step(1.0, 20.0, 0.0)
    measured = model.step(1.0, 20.0, 5.0, top_oil_c=90.0)
    assert measured.hot_spot_c == pytest.approx(90.0 + 26.0)  # steady K = 1: Δθh = 52 − 26
    # a sub-stepped long step gives the same as many short ones (Dt ≤ τw/2 inside)
    a, b = DynamicThermalModel(ONAN), DynamicThermalModel(ONAN)
    a.step(1.0, 20.0, 0.0), b.step(1.0, 20.0, 0.0)
    long = a.step(1.3, 25.0, 60.0)
    for _ in range(12):
        short = b.step(1.3, 25.0, 5.0)
    assert long.hot_spot_c == pytest.approx(short.hot_spot_c, abs=1e-9)
    assert a.loss_of_life_h > 0
