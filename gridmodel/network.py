"""Load the network model the twin mirrors: a SimBench code or a pandapower JSON file."""

from __future__ import annotations

import copy
import functools
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandapower as pp
import pandas as pd

from gridverse.config import NetworkConfig

log = logging.getLogger(__name__)


class NetworkLoadError(Exception):
    """The network named in the configuration could not be loaded."""


@dataclass(frozen=True)
class GridData:
    """A network and, for SimBench grids, its absolute 15-minute profiles for one year."""

    net: pp.pandapowerNet
    profiles: dict[tuple[str, str], pd.DataFrame]


@functools.lru_cache(maxsize=4)
def _load_cached(config: NetworkConfig) -> GridData:
    warnings.filterwarnings("ignore", message=".*numba.*")
    if config.file is not None:
        return GridData(net=_load_file(config.file), profiles={})
    import simbench as sb

    try:
        net = sb.get_simbench_net(config.simbench_code)
    except Exception as exc:  # simbench raises plain exceptions for unknown codes
        raise NetworkLoadError(
            f"network.simbench_code {config.simbench_code!r}: not a SimBench grid ({exc}); "
            "see simbench's list of codes, e.g. 1-MV-rural--1-sw"
        ) from exc
    profiles = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    log.info("loaded network", extra={"code": config.simbench_code, "buses": len(net.bus)})
    return GridData(net=net, profiles=profiles)


def _load_file(path: Path) -> pp.pandapowerNet:
    """A pandapower JSON network, or NetworkLoadError naming the file and the remedy."""
    remedy = (
        "give a network saved with pandapower.to_json(net, path) (other formats: pandapower.converter), "
        "or set site.network.simbench_code instead"
    )
    if not path.is_file():
        raise NetworkLoadError(f"{path}: file not found (working directory {Path.cwd()}); {remedy}")
    try:
        # pandapower reads a string that is not a file as JSON text: hand it the open file instead
        with path.open(encoding="utf-8") as handle:
            net = pp.from_json(handle)
    except Exception as exc:  # pandapower raises UserWarning, AttributeError, KeyError … for foreign files
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise NetworkLoadError(f"{path}: not a pandapower network ({reason}); {remedy}") from None
    if not isinstance(net, pp.pandapowerNet) or "bus" not in net or len(net.bus) == 0:
        raise NetworkLoadError(f"{path}: holds no buses, so it is not a usable pandapower network; {remedy}")
    log.info("loaded network", extra={"file": str(path), "buses": len(net.bus)})
    return net


def load_grid(config: NetworkConfig) -> GridData:
    """A private copy of the network (callers mutate it); profiles are shared read-only."""
    data = _load_cached(config)
    return GridData(net=copy.deepcopy(data.net), profiles=data.profiles)


def profile_position(profiles: dict[tuple[str, str], pd.DataFrame], when: pd.Timestamp) -> float:
    """Fractional row of the 15-minute profile year for a moment (any year maps onto it)."""
    n = len(next(iter(profiles.values())))
    start = pd.Timestamp(year=when.year, month=1, day=1, tz=when.tz)
    return ((when - start).total_seconds() / 900.0) % n


def profile_values(
    profiles: dict[tuple[str, str], pd.DataFrame], when: pd.Timestamp
) -> dict[tuple[str, str], pd.Series]:
    """Each profile linearly interpolated between its 15-minute values at `when`."""
    pos = profile_position(profiles, when)
    lo = int(pos)
    frac = pos - lo
    out = {}
    for key, frame in profiles.items():
        if frame.shape[1] == 0:
            out[key] = frame.iloc[0] if len(frame) else pd.Series(dtype=float)
            continue
        hi = (lo + 1) % len(frame)
        out[key] = frame.iloc[lo] * (1 - frac) + frame.iloc[hi] * frac
    return out


def apply_profiles(net: pp.pandapowerNet, values: dict[tuple[str, str], pd.Series]) -> None:
    """Write profile values into the network's loads, generators and storage."""
    for (element, column), series in values.items():
        table = getattr(net, element)
        if len(table) and len(series):
            table.loc[series.index, column] = series.values
