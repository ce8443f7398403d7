"""What a step view must show, checked on the picture a technician gets: the equipment drawn in
its state's colour, filling part of the frame around its middle, and the picture saying which
equipment and state it shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gridverse.config import AssetKind
from inspection.equipment import equipment_kind
from inspection.state import AssetState


def pixels_in_colour(image: np.ndarray, rgb: tuple[float, float, float], tolerance: float = 0.06) -> np.ndarray:
    """Pixels whose colour is `rgb` however brightly lit (the renderer scales a part's colour by
    its light): same direction in RGB space within `tolerance`, and not near black."""
    pixels = image[..., :3].astype(float)
    norm = np.linalg.norm(pixels, axis=-1)
    target = np.asarray(rgb, dtype=float) / np.linalg.norm(rgb)
    unit = pixels / np.maximum(norm, 1e-9)[..., None]
    return (np.linalg.norm(unit - target, axis=-1) < tolerance) & (norm > 60)


def assert_step_view_shows(path: Path, asset: str, kind: AssetKind, state: AssetState, min_share: float = 0.03) -> None:
    """The step view at `path` shows `asset` in `kind`'s colour for `state`: at least `min_share`
    of the picture (the label panel's border in that colour is far less), centred in the frame,
    and the picture's metadata names the asset and state."""
    image = np.asarray(Image.open(path).convert("RGB"))
    colour = equipment_kind(kind).colour_of(state)
    mask = pixels_in_colour(image, colour)
    share = float(mask.mean())
    assert share >= min_share, f"{asset} in the {state.value} colour {colour} covers {share:.1%} of {path}"
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    assert w * 0.2 < xs.mean() < w * 0.8 and h * 0.15 < ys.mean() < h * 0.85, "the equipment is framed, not at the edge"
    meta = Image.open(path).text
    assert meta["gridverse:asset"] == asset and meta["gridverse:state"] == state.value, meta
