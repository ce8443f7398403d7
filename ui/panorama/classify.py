"""Sort every bus, branch and switch into the few classes the panoramic view draws.

ISA-101 high-performance HMI: the normal state is grey; colour only marks what is abnormal
(a voltage outside the band, a loading near or over its limit, a switch out of its normal
position). Buses with no valid estimate are drawn as "no data", never with a believable value."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ui.panorama.layout import GridLayout, energised

#: A branch is drawn amber from this fraction of its loading limit, red above the limit.
NEAR_LIMIT_FRACTION = 0.9


class BusClass(StrEnum):
    DEENERGISED = "de-energised"
    NO_DATA = "no estimate"
    NORMAL = "in band"
    LOW = "below band"
    HIGH = "above band"


class BranchClass(StrEnum):
    DEENERGISED = "de-energised / open"
    NO_DATA = "no estimate"
    NORMAL = "within limit"
    NEAR = "near limit"
    OVER = "over limit"


class SwitchClass(StrEnum):
    OPEN_NORMAL = "open (normally open)"
    OFF_NORMAL = "not in normal position"


class Quality(StrEnum):
    """How a bus's value is known."""

    MEASURED = "measured"  # a fresh, good reading at this bus
    ESTIMATED = "estimated"  # from the state estimate only
    STALE = "stale"  # its reading is old or bad; the estimate leans on pseudo-measurements
    NONE = "no data"


@dataclass(frozen=True)
class LiveState:
    """What is true now, by bus and branch position (NaN where not known)."""

    vm_pu: np.ndarray  # per bus
    loading_percent: np.ndarray  # per branch
    branch_in_service: np.ndarray  # per branch: the normal state minus breakers reported open
    switch_closed: np.ndarray  # per switch: the normal position, overridden by telemetry
    quality: np.ndarray  # per bus, Quality values
    n1: dict[int, str]  # branch position → what its outage would do (from the twin's last N-1 run)


@dataclass(frozen=True)
class Classified:
    bus: np.ndarray  # BusClass values
    branch: np.ndarray  # BranchClass values
    switch_shown: np.ndarray  # switch positions worth drawing
    switch: np.ndarray  # SwitchClass values of those
    energised: np.ndarray  # per bus


def classify(layout: GridLayout, state: LiveState, *, band: tuple[float, float], loading_limit: float) -> Classified:
    """Classes of every element; values outside the band or limit win over "normal"."""
    live = energised(layout, state.branch_in_service, state.switch_closed)
    vm = state.vm_pu
    bus = np.full(len(layout.bus), BusClass.NO_DATA.value, dtype=object)
    bus[~live] = BusClass.DEENERGISED.value
    known = live & np.isfinite(vm)
    bus[known] = BusClass.NORMAL.value
    bus[known & (vm < band[0])] = BusClass.LOW.value
    bus[known & (vm > band[1])] = BusClass.HIGH.value

    conducting = state.branch_in_service.copy()
    on_branch = layout.switch_branch >= 0
    conducting[layout.switch_branch[on_branch & ~state.switch_closed]] = False
    branch_live = conducting & live[layout.branch_from] & live[layout.branch_to]
    load = state.loading_percent
    branch = np.full(len(layout.branch_kind), BranchClass.NO_DATA.value, dtype=object)
    branch[~branch_live] = BranchClass.DEENERGISED.value
    known_b = branch_live & np.isfinite(load)
    branch[known_b] = BranchClass.NORMAL.value
    branch[known_b & (load >= NEAR_LIMIT_FRACTION * loading_limit)] = BranchClass.NEAR.value
    branch[known_b & (load > loading_limit)] = BranchClass.OVER.value

    off_normal = state.switch_closed != layout.switch_normally_closed
    open_normal = ~state.switch_closed & ~layout.switch_normally_closed
    shown = np.flatnonzero(off_normal | open_normal)
    switch = np.where(off_normal[shown], SwitchClass.OFF_NORMAL.value, SwitchClass.OPEN_NORMAL.value).astype(object)
    return Classified(bus, branch, shown, switch, live)
