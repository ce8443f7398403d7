"""Scan-to-twin registration on simulated scans (ray-cast partial views, 5 mm noise, unknown pose
within ±30° and ±2 m): the pose is recovered, a displaced part is flagged, a broken file is a
clear error, and the command records every registration in the audit record."""

from __future__ import annotations

import json

import numpy as np
import open3d as o3d
import pytest

from gridverse.audit import AuditRecord
from gridverse.cli import main
from gridverse.settings import load_settings
from inspection.registration import ScanError, load_scan, model_cloud, register_scan
from inspection.scansim import pose_error, simulate_scan
from tests.helpers import config_dir

SUBSTATION = "primary"


@pytest.fixture(scope="module")
def assets():
    return load_settings().assets[SUBSTATION]


@pytest.fixture(scope="module")
def model(assets):
    return model_cloud(assets)


def test_a_scan_with_an_unknown_pose_is_aligned_within_2_cm_and_half_a_degree(assets, model):
    sim = simulate_scan(assets, n_points=40_000, seed=3)
    assert not np.allclose(sim.true_pose, np.eye(4), atol=0.05)  # the pose really is unknown
    result = register_scan(sim.cloud(), model)
    metres, degrees = pose_error(result.transform, sim.true_pose)
    assert metres <= 0.02 and degrees <= 0.5, (metres, degrees)
    assert result.fitness > 0.8 and result.inlier_rmse_m < 0.1  # nearest model sample, 8 cm apart
    assert not result.flagged  # nothing was moved: nothing is flagged


def test_a_part_displaced_by_15_cm_is_flagged_as_moved(assets, model):
    moved = "PRIM/T1/YPTR1"
    sim = simulate_scan(assets, n_points=40_000, seed=0, displace=moved, displacement_m=0.15)
    result = register_scan(sim.cloud(), model)
    metres, degrees = pose_error(result.transform, sim.true_pose)
    assert metres <= 0.02 and degrees <= 0.5, (metres, degrees)
    flagged = {e.asset: e for e in result.flagged}
    assert moved in flagged and flagged[moved].status == "moved", result.flagged
    assert flagged[moved].offset_m >= 0.08


def test_equipment_that_is_gone_is_flagged_missing_and_nothing_else_is(assets, model):
    """Where the breaker stood the scanner now sees bare ground: missing. Equipment merely hidden
    behind others covers its own footprint, so it is not called missing."""
    gone = "PRIM/Q07/XCBR1"  # in the front row of this scan
    sim = simulate_scan(assets, n_points=60_000, seed=5, remove=gone)
    result = register_scan(sim.cloud(), model)
    status = {e.asset: e.status for e in result.equipment}
    assert status[gone] == "missing", next(e for e in result.equipment if e.asset == gone)
    assert [e.asset for e in result.flagged] == [gone]


def test_a_broken_or_empty_scan_file_is_a_clear_error_naming_it(tmp_path):
    broken = tmp_path / "site-scan.ply"
    broken.write_text("ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nend_header\n1 2\n")
    with pytest.raises(ScanError, match=r"site-scan\.ply.*re-export"):
        load_scan(broken)
    with pytest.raises(ScanError, match=r"nothing\.ply does not exist"):
        load_scan(tmp_path / "nothing.ply")
    (tmp_path / "scan.docx").write_text("x")
    with pytest.raises(ScanError, match=r"\.docx is not a point cloud format"):
        load_scan(tmp_path / "scan.docx")
    (tmp_path / "empty.xyz").write_text("")
    with pytest.raises(ScanError, match=r"empty\.xyz"):
        load_scan(tmp_path / "empty.xyz")


def test_register_command_reports_the_alignment_and_audits_it(tmp_path, assets, capsys):
    config = config_dir(tmp_path)
    sim = simulate_scan(assets, n_points=30_000, seed=7)
    scan = tmp_path / "scan.ply"
    o3d.io.write_point_cloud(str(scan), sim.cloud())
    code = main(["--config", str(config), "inspect", "register", str(scan), "--substation", SUBSTATION, "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metres, degrees = pose_error(np.array(report["transform"]), sim.true_pose)
    assert metres <= 0.02 and degrees <= 0.5
    settings = load_settings(config)
    entries = [e for e in AuditRecord(settings.audit.path).entries() if e.action == "inspect.register"]
    assert len(entries) == 1 and entries[0].target == SUBSTATION
    # a broken file: one line naming it and the remedy, exit code 2, nothing audited
    bad = tmp_path / "bad.ply"
    bad.write_text("not a point cloud")
    assert main(["--config", str(config), "inspect", "register", str(bad), "--substation", SUBSTATION]) == 2
    assert "bad.ply" in capsys.readouterr().err
    assert len([e for e in AuditRecord(settings.audit.path).entries() if e.action == "inspect.register"]) == 1
