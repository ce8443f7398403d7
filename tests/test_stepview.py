"""Step views through the render worker: the framed equipment sits in the middle of the picture in
its state colour, the picture is not blank and says what it shows, a second view re-colours the
scene built once (no geometry added or removed again), and a hundred views in a row, each with a
state change, each come back quickly (the Filament renderer used before stalled for minutes)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from gridverse.settings import load_settings
from inspection.state import AssetState
from inspection.stepview import render_step, stop_worker
from tests.helpers import config_dir

TRANSFORMER = "PRIM/T2/YPTR1"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stepview")

    def small(doc):  # a small frame keeps Mesa's CPU renderer quick
        doc["inspection"]["width"] = 320
        doc["inspection"]["height"] = 240

    yield load_settings(config_dir(tmp, small))
    stop_worker()


def _red(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > 70) & (r > 2 * g) & (r > 2 * b)  # the alarm colour's hue, however lit


def test_step_view_frames_the_equipment_in_its_state_colour(settings):
    path = render_step(
        "primary",
        TRANSFORMER,
        {TRANSFORMER: AssetState.ALARM},
        {"TmpOil": 98.5},
        settings=settings,
        timeout=300,
        wait_s=300,
    )
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.std() > 5  # not blank
    red = _red(image[:, :, :])
    red[:, image.shape[1] * 2 // 3 :] = False  # the label panel's red border sits beside the equipment
    assert red.sum() > 0.02 * red.size, "the alarmed transformer should fill part of the frame in the alarm colour"
    ys, xs = np.nonzero(red)
    h, w = red.shape
    assert w * 0.2 < xs.mean() < w * 0.8 and h * 0.2 < ys.mean() < h * 0.8  # framed: in the centre region
    meta = Image.open(path).text
    assert meta["gridverse:asset"] == TRANSFORMER and meta["gridverse:state"] == "alarm" and meta["gridverse:time"]


def test_a_second_view_reuses_the_scene(settings):
    from inspection import stepview

    first = render_step("primary", TRANSFORMER, AssetState.NORMAL, {}, settings=settings, timeout=300, wait_s=300)
    worker = stepview._shared_worker(settings)
    before = worker.stats()
    again_path = first.with_name("again.png")  # another file: a new request, not the cached answer
    again = render_step(
        "primary", TRANSFORMER, AssetState.NORMAL, {}, again_path, settings=settings, timeout=300, wait_s=300
    )
    after = worker.stats()
    assert after["renders"] == before["renders"] + 1
    assert after["geometries_added"] == before["geometries_added"]  # nothing rebuilt
    assert after["materials_changed"] == before["materials_changed"]  # nothing changed, nothing re-coloured
    # the scene was built once: every part is a geometry added then, none removed since
    assert after["builds"] == 1 and after["geometries_removed"] == 0
    assert after["geometries"] == after["geometries_added"] > after["parts"] > 20
    image = np.asarray(Image.open(again).convert("RGB"))
    assert image.std() > 5 and again == again_path


def test_a_slow_view_does_not_hold_the_page(settings):
    """A page asking for a view that is not ready in time gets StepViewPending at once (it shows
    the latest substation render meanwhile), not a page hung on the renderer."""
    from inspection.stepview import StepViewPending

    t0 = time.monotonic()
    with pytest.raises(StepViewPending, match="PRIM/T1/YPTR1 is still being rendered"):
        render_step("primary", "PRIM/T1/YPTR1", AssetState.WARNING, {}, settings=settings, wait_s=0.01)
    assert time.monotonic() - t0 < 5


def test_a_hundred_step_views_with_state_changes_each_come_back_quickly(settings, tmp_path):
    """Every view re-colours the scene (another equipment highlighted, another state) and moves the
    camera; none may stall (the Filament renderer took seconds to minutes after a state change).
    5 s a view is far above the ~0.1 s a view takes, so a busy shared machine does not fail it."""
    from inspection import stepview

    render_step("primary", TRANSFORMER, AssetState.ALARM, {}, settings=settings, timeout=300, wait_s=300)
    worker = stepview._shared_worker(settings)
    before = worker.stats()
    assets = [a.name for a in settings.assets["primary"]]
    states = [AssetState.ALARM, AssetState.NORMAL, AssetState.WARNING, AssetState.OPEN, AssetState.UNKNOWN]
    took = []
    for i in range(100):
        t0 = time.monotonic()
        path = worker.render_step(
            "primary", assets[(7 * i) % len(assets)], states[i % len(states)], {"P": float(i)}, tmp_path / "v.png"
        )
        took.append(time.monotonic() - t0)
        assert path.is_file()
    after = worker.stats()
    assert max(took) < 5.0, f"slowest of 100 views {max(took):.1f} s (view {took.index(max(took))})"
    assert sorted(took)[50] < 1.0, f"median view {sorted(took)[50]:.2f} s"
    assert after["renders"] == before["renders"] + 100
    assert after["geometries_added"] == before["geometries_added"] and after["geometries_removed"] == 0
    assert after["materials_changed"] > before["materials_changed"]  # each view re-coloured the parts


def test_recolouring_changes_colours_only(settings):
    """In this process (the ray caster needs no render process of its own): a state change and a
    highlight re-colour the parts of the scene built once; an unknown equipment is a clear error."""
    from gridverse.config import AssetKind
    from inspection.equipment import equipment_kind
    from inspection.render import SceneRenderer, dimmed, framing
    from inspection.state import COLOURS

    assets = settings.assets["primary"]
    r = SceneRenderer(64, 48)
    r.build("primary", assets)
    added = r.stats.geometries_added
    r.colour("primary", assets, {TRANSFORMER: AssetState.ALARM})
    alarm = pytest.approx(COLOURS[AssetState.ALARM], abs=1e-6)  # the table holds float32
    assert any(c == alarm for c in r.colour_of("primary", TRANSFORMER))
    r.highlight("primary", assets, "PRIM/T1/YPTR1", AssetState.NORMAL)
    assert not any(c == alarm for c in r.colour_of("primary", TRANSFORMER))
    grey = dimmed(equipment_kind(AssetKind.TRANSFORMER).structure_colour)  # every part of T2 washed out
    assert all(c == pytest.approx(grey, abs=1e-6) for c in r.colour_of("primary", TRANSFORMER))
    lo, hi = r.bounds("primary", "PRIM/T1/YPTR1")
    image = r.render("primary", framing(lo, hi, 64 / 48), xray="PRIM/T1/YPTR1")
    assert image.shape == (48, 64, 3) and image.std() > 5
    assert r.stats.geometries_added == added and r.stats.geometries_removed == 0
    with pytest.raises(KeyError, match="'PRIM/NOPE' is not equipment of substation 'primary' in assets.yaml"):
        r.highlight("primary", assets, "PRIM/NOPE", AssetState.ALARM)
