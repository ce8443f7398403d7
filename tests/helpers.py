"""Build test configurations: the shipped configs with ports, paths and faults changed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from gridverse.settings import REPO_ROOT
from tests.services import free_port


def config_dir(tmp: Path, mutate=None) -> Path:
    """A copy of configs/ in `tmp` with free ports and paths inside `tmp`; returns the main file."""
    target = tmp / "configs"
    shutil.copytree(REPO_ROOT / "configs", target)
    main = target / "gridverse.yaml"
    doc: dict[str, Any] = yaml.safe_load(main.read_text())
    for sub in doc["site"]["substations"]:
        sub["port"] = free_port()
    doc["mqtt"]["port"] = free_port()
    doc["historian"]["path"] = str(tmp / "gridverse.db")
    doc.setdefault("gateway", {})["spool"] = {"path": str(tmp / "spool.db")}
    doc.setdefault("anomaly", {})["alarm_state_path"] = str(tmp / "alarm-state.db")
    doc["inspection"]["output_dir"] = str(tmp / "render")
    doc["inspection"]["viewer_port"] = free_port()  # each test's 3D viewer on its own port
    doc["audit"] = {"path": str(tmp / "audit" / "audit.jsonl"), "key_path": str(tmp / "audit" / "audit.key")}
    doc["auth"] = {"users_file": str(tmp / "users.yaml"), "argon2_time_cost": 1, "argon2_memory_kib": 1024}
    if mutate is not None:
        mutate(doc)
    main.write_text(yaml.safe_dump(doc, sort_keys=False))
    return main
