"""The grid twin's configuration: which network, and how the estimator weighs and tests measurements."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from gridverse.configbase import ReadableFile, Strict


class EstimatorKind(StrEnum):
    """Which state estimator the twin runs."""

    PANDAPOWER = "pandapower"
    SPARSE = "sparse"


class NetworkConfig(Strict):
    simbench_code: str | None = "1-MV-rural--1-sw"
    file: ReadableFile | None = Field(default=None, description="a pandapower JSON file (pandapower.to_json)")

    @field_validator("file")
    @classmethod
    def _json_file(cls, v: Path | None) -> Path | None:
        if v is not None and v.suffix.lower() != ".json":
            raise ValueError(
                f"{str(v)!r} is not a pandapower JSON file; save the network with pandapower.to_json(net, "
                "'grid.json') (converters: pandapower.converter.from_mpc, from_cim, …) and name that file"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _file_replaces_default_code(cls, data: Any) -> Any:
        """`network: {file: grid.json}` means that file, not the default SimBench code as well."""
        if isinstance(data, dict) and data.get("file") is not None and "simbench_code" not in data:
            return {**data, "simbench_code": None}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> NetworkConfig:
        if (self.simbench_code is None) == (self.file is None):
            raise ValueError("give exactly one of simbench_code or file")
        return self


class TwinConfig(Strict):
    interval_s: float = Field(default=2.0, gt=0)
    stale_after_s: float = Field(default=10.0, gt=0)
    voltage_sigma_pu: float = Field(default=0.004, gt=0)
    pseudo_sigma_frac: float = Field(default=0.3, gt=0)
    pseudo_sigma_floor_mw: float = Field(default=0.02, gt=0)
    zero_injection_sigma_mw: float = Field(default=1e-4, gt=0)
    skew_sigma_frac: float = Field(default=0.01, ge=0, description="flow uncertainty from polls not being simultaneous")
    flow_sigma_floor: float = Field(default=0.002, gt=0, description="MW, Mvar or kA")
    estimator: EstimatorKind = EstimatorKind.SPARSE
    bad_data_threshold: float = Field(
        default=4.0, gt=0, description="largest normalised residual above which a reading is suspect"
    )
    chi2_confidence: float = Field(default=0.99, gt=0, lt=1)
    max_bad_data_removals: int = Field(default=3, ge=0)
    # The estimated state is written with a deadband (gridmodel/writer.py): a bus or branch row only
    # when a value moved beyond it since last written, every row at least every state_refresh_cycles
    # cycles. Defaults sit below what the meters resolve: a quarter of voltage_sigma_pu, the flow σ
    # floor; at 10,000 buses a cycle's estimate moves by ~7e-4 pu (median) from meter noise alone.
    state_deadband_vm_pu: float = Field(default=1e-3, ge=0, description="0 writes every bus every cycle")
    state_deadband_va_degree: float = Field(default=0.1, ge=0)
    state_deadband_mw: float = Field(default=2e-3, ge=0, description="bus P (MW) and Q (Mvar)")
    state_deadband_loading_percent: float = Field(default=1.0, ge=0, description="percentage points")
    state_refresh_cycles: int = Field(default=30, ge=1, description="every row is rewritten at least this often")
