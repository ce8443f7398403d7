"""The combiner: on-delay, off-delay and hysteresis on hand-made score series; no chattering."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anomaly.dataset import ALARMS_COLUMNS
from anomaly.events import Hysteresis, combine, event_windows


def test_on_delay_needs_k_samples_in_a_row_and_raises_at_the_kth() -> None:
    rule = Hysteresis(high=1.0, low=0.5, on_delay=3, off_delay=1)
    assert event_windows(np.array([0, 2, 2, 0, 2, 2, 0, 0]), rule) == []  # never 3 in a row
    assert event_windows(np.array([0, 2, 2, 2, 2, 0, 0]), rule) == [(3, 5)]  # raised at the 3rd, not backdated


def test_off_delay_needs_m_samples_below_low() -> None:
    rule = Hysteresis(high=1.0, low=0.5, on_delay=1, off_delay=3)
    # two low samples do not clear; the third in a row does
    assert event_windows(np.array([2, 0, 0, 2, 0, 0, 0, 0]), rule) == [(0, 6)]


def test_a_score_hovering_around_the_threshold_gives_one_event_not_a_chattering_alarm() -> None:
    hovering = np.array([0.0] * 3 + [1.2, 0.9] * 10 + [0.0] * 5)
    with_band = event_windows(hovering, Hysteresis(high=1.0, low=0.6, on_delay=1, off_delay=2))
    assert with_band == [(3, 24)]
    # the same series with no band and no off-delay is what chattering looks like
    assert len(event_windows(hovering, Hysteresis(high=1.0, low=1.0, on_delay=1, off_delay=1))) == 10


def test_an_event_still_active_at_the_end_ends_at_the_last_sample_and_nan_is_no_evidence() -> None:
    rule = Hysteresis(high=1.0, low=0.5, on_delay=1, off_delay=2)
    assert event_windows(np.array([0, 0, 3, 3, 0.8]), rule) == [(2, 4)]
    assert event_windows(np.array([np.nan, np.nan, 3, np.nan, np.nan, 0]), rule) == [(2, 4)]


def test_combine_names_type_at_peak_target_and_top_contributors() -> None:
    times = pd.date_range("2016-01-01", periods=8, freq="15min", tz="UTC")
    scores = pd.DataFrame({"A": [0, 2, 5, 2, 0, 0, 0, 0], "B": [0, 0.2, 0.9, 0.1, 0, 0, 0, 0.0]}, index=times)
    kinds = pd.DataFrame({"A": ["bias", "bias", "stuck", "bias"] + ["bias"] * 4, "B": ["spike"] * 8}, index=times)
    targets = pd.DataFrame(
        {"point": ["A", "B"], "element_type": ["line", "bus"], "element": [3, 1]}, index=pd.Index(["A", "B"])
    )
    out = combine(scores, Hysteresis(off_delay=2), targets=targets, kinds=kinds, contributions=scores, top=2)
    assert list(out.columns[: len(ALARMS_COLUMNS)]) == ALARMS_COLUMNS
    assert len(out) == 1
    row = out.iloc[0]
    assert (row.start, row.end) == (times[1], times[5])
    assert (row.type, row.point, row.element_type, row.element, row.score) == ("stuck", "A", "line", 3, 5.0)
    assert row.contributing == "A;B"


def test_a_band_upside_down_is_refused_with_the_values() -> None:
    with pytest.raises(ValueError, match=r"low \(2\.0\) must not exceed high \(1\.0\)"):
        Hysteresis(high=1.0, low=2.0)
