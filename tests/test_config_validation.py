"""Configuration that should be refused is refused, once, with every problem and the file that holds it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gridverse.cli import build_parser
from gridverse.settings import REPO_ROOT, ConfigError, load_settings, redacted
from tests.helpers import config_dir


def _problems(main: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(main, environ=environ or {})
    return str(err.value)


def _cli(main: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridverse.cli", "--config", str(main), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


# --- ports -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d["mqtt"].update(port=99999), "mqtt.port"),
        (lambda d: d["ui"].update(port=-5), "ui.port"),
        (lambda d: d["site"]["substations"][1].update(port=0), "site.substations.1(ss08).port"),
        (lambda d: d["historian"]["influx"].update(url="http://127.0.0.1:99999"), "historian.influx.url"),
    ],
)
def test_ports_out_of_range_are_refused(tmp_path: Path, mutate, where: str) -> None:
    message = _problems(config_dir(tmp_path, mutate))
    assert where in message and ("1-65535" in message), message


def test_port_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    message = _problems(config_dir(tmp_path), {"GRIDVERSE_MQTT__PORT": "70000"})
    assert "environment" in message and "GRIDVERSE_MQTT__PORT (mqtt.port)" in message and "70000" in message


# --- duplicated keys ---------------------------------------------------------------------------


def test_duplicated_top_level_section_names_file_key_and_both_lines(tmp_path: Path) -> None:
    main = config_dir(tmp_path)
    text = main.read_text()
    first = 1 + text.splitlines().index("mqtt:")
    main.write_text(text + "mqtt:\n  port: 1884\n")
    second = len(main.read_text().splitlines()) - 1
    message = _problems(main)
    assert f"{main}: line {second}: key 'mqtt' is given twice (first at line {first})" in message


def test_duplicated_nested_key_in_a_profile_is_refused(tmp_path: Path) -> None:
    main = config_dir(tmp_path)
    profile = main.parent / "profiles" / "feeder_ied.yaml"
    text = profile.read_text()
    line = 1 + next(i for i, row in enumerate(text.splitlines()) if "MMXU1.TotVAr" in row)
    profile.write_text(text.replace("address: 2, type: i32", "address: 2, type: i32, address: 40", 1))
    message = _problems(main)
    assert f"feeder_ied.yaml: line {line}: key 'address' is given twice (first at line {line})" in message


# --- the network file --------------------------------------------------------------------------


def test_missing_network_file_is_a_config_error(tmp_path: Path) -> None:
    main = config_dir(tmp_path, lambda d: d["site"].update(network={"file": str(tmp_path / "grid.json")}))
    result = _cli(main, "config", "check")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "site.network.file" in result.stderr and "grid.json' not found" in result.stderr


def test_non_pandapower_network_file_is_named_with_the_remedy(tmp_path: Path) -> None:
    bogus = tmp_path / "grid.json"
    bogus.write_text(json.dumps({"buses": [1, 2, 3]}))
    main = config_dir(tmp_path, lambda d: d["site"].update(network={"file": str(bogus)}))
    result = _cli(main, "config", "check")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{bogus}: not a pandapower network" in result.stderr and "pandapower.to_json" in result.stderr


def test_network_file_in_another_format_is_refused_at_load(tmp_path: Path) -> None:
    sheet = tmp_path / "grid.xlsx"
    sheet.write_bytes(b"PK\x03\x04")
    message = _problems(config_dir(tmp_path, lambda d: d["site"].update(network={"file": str(sheet)})))
    assert "site.network.file" in message and "not a pandapower JSON file" in message


# --- replay times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["", "NaT", "nat", "garbage", "2200-01-01", "2300-01-01", "99999999999999999999999", "-5"]
)
def test_replay_at_refuses_what_is_not_a_past_time(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["twin", "replay", "--at", value])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("gridverse twin replay: error: argument --at:") and repr(value) in last
    assert "Traceback" not in last


def test_replay_at_accepts_a_past_time() -> None:
    args = build_parser().parse_args(["twin", "replay", "--at", "2026-11-24T10:15:00Z"])
    assert args.at == 1_795_515_300_000_000_000


# --- TLS files ---------------------------------------------------------------------------------


def test_missing_tls_file_is_caught_by_config_check(tmp_path: Path) -> None:
    main = config_dir(tmp_path, lambda d: d["mqtt"].update(tls={"ca_file": str(tmp_path / "ca.pem")}))
    result = _cli(main, "config", "check")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "mqtt.tls.ca_file" in result.stderr and "ca.pem' not found" in result.stderr


# --- every problem in one run, each under its file ---------------------------------------------


def _new_site(tmp_path: Path) -> Path:
    """configs/ copied, with only `site:` replaced by another site (the reproduction from issue 9)."""
    target = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", target)
    main = target / "gridverse.yaml"
    doc = yaml.safe_load(main.read_text())
    doc["site"] = {
        "name": "north",
        "substations": [
            {
                "name": "n1",
                "port": 5020,
                "devices": [
                    {"name": "M1", "bay": "TR", "unit_id": 1, "profile": "secondary_rtu"},
                ],
            }
        ],
    }
    main.write_text(yaml.safe_dump(doc, sort_keys=False))
    return main


def test_copied_configs_with_a_new_site_fail_once_naming_each_file(tmp_path: Path) -> None:
    main = _new_site(tmp_path)
    result = _cli(main, "config", "check")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    err = result.stderr
    assert "4 problems" in err
    assets_part = err.split(f"{main.parent / 'assets.yaml'}: 2 problem(s)")[1].split(f"{main}:")[0]
    assert "primary: no substation 'primary'" in assets_part and "ss20: no substation 'ss20'" in assets_part
    main_part = err.split(f"{main}: 2 problem(s)")[1]
    assert "inspection.substation: unknown substation 'primary'" in main_part
    assert "simulator.faults.0.device: unknown device or sensor 'T2-oil'" in main_part


def test_copied_configs_with_a_new_site_work_once_the_named_problems_are_fixed(tmp_path: Path) -> None:
    main = _new_site(tmp_path)
    (main.parent / "assets.yaml").unlink()
    doc = yaml.safe_load(main.read_text())
    del doc["inspection"]
    doc["simulator"]["faults"] = []
    main.write_text(yaml.safe_dump(doc, sort_keys=False))
    settings = load_settings(main, environ={})
    assert settings.site.name == "north" and settings.inspection is None and settings.assets == {}


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        primary = d["site"]["substations"][0]["devices"]
        primary[0]["profile"] = "no_such_profile"  # device → profile
        primary[1]["name"] = "T1"  # duplicate device name
        primary[3]["unit_id"] = primary[2]["unit_id"]  # duplicate unit id
        d["site"]["sensors"][0]["substation"] = "nowhere"  # sensor → substation
        d["simulator"]["faults"][0]["device"] = "ghost"  # fault → device
        d["mqtt"]["port"] = 0  # a structural error beside the references

    main = config_dir(tmp_path, mutate)
    assets = main.parent / "assets.yaml"
    assets.write_text(assets.read_text().replace("device: F8", "device: F9"))  # asset → device
    profile = main.parent / "profiles" / "secondary_rtu.yaml"
    doc = yaml.safe_load(profile.read_text())
    doc["points"][0]["type"] = "int24"
    profile.write_text(yaml.safe_dump(doc))

    message = _problems(main)
    by_file = {block.split(":", 1)[0]: block for block in message.split("\n/")}
    main_block = next(b for f, b in by_file.items() if f.endswith("gridverse.yaml"))
    for expected in (
        "site.substations.0(primary).devices.0(T1).profile: unknown profile 'no_such_profile'",
        "site.substations.0(primary).devices.1(T1).name: device name 'T1' is used twice",
        "site.substations.0(primary).devices.3(F2).unit_id: unit id 11 is used twice on substation primary",
        "site.sensors.0(T1-oil).substation: unknown substation 'nowhere'",
        "simulator.faults.0.device: unknown device or sensor 'ghost'",
        "mqtt.port: a TCP port is 1-65535 (got 0)",
    ):
        assert expected in main_block, (expected, message)
    assets_block = next(b for f, b in by_file.items() if f.endswith("assets.yaml"))
    assert "primary.13(PRIM/Q08/XCBR1).device: unknown device or sensor 'F9'" in assets_block
    profile_block = next(b for f, b in by_file.items() if f.endswith("secondary_rtu.yaml"))
    assert "points.0" in profile_block and "int24" in profile_block
    # a device on the broken profile is not also reported as pointing at an unknown profile
    assert "unknown profile 'secondary_rtu'" not in message


# --- sections a site may not have --------------------------------------------------------------


def _bare_site(tmp_path: Path) -> Path:
    def mutate(d: dict) -> None:
        d["site"] = {"name": "bare"}
        del d["inspection"]
        d["simulator"]["faults"] = []

    main = config_dir(tmp_path, mutate)
    (main.parent / "assets.yaml").unlink()
    return main


def test_a_site_without_rtus_sensors_inspection_or_assets_is_valid(tmp_path: Path) -> None:
    main = _bare_site(tmp_path)
    settings = load_settings(main, environ={})
    assert settings.site.substations == [] and settings.site.sensors == []
    assert settings.inspection is None and settings.assets == {}
    result = _cli(main, "config", "check")
    assert result.returncode == 0, result.stderr
    assert "0 substations, 0 devices, 0 sensors" in result.stdout and "renders nothing" in result.stdout


# --- secrets -----------------------------------------------------------------------------------


def test_credentials_in_the_influx_url_are_refused_and_not_echoed(tmp_path: Path) -> None:
    url = "http://admin:Sup3rSecret@influx.example:8086"
    main = config_dir(tmp_path, lambda d: d["historian"]["influx"].update(url=url))
    message = _problems(main)
    assert "historian.influx.url" in message and "GRIDVERSE_HISTORIAN__INFLUX__PASSWORD" in message
    assert "Sup3rSecret" not in message
    from_env = _problems(config_dir(tmp_path / "env"), {"GRIDVERSE_HISTORIAN__INFLUX__URL": url})
    assert "GRIDVERSE_HISTORIAN__INFLUX__URL" in from_env and "Sup3rSecret" not in from_env
    result = _cli(main, "config", "show")
    assert result.returncode == 2 and "Sup3rSecret" not in result.stdout + result.stderr


@pytest.mark.parametrize("password", ["123456", "true", "null", "[a, b]", "0x1F"])
def test_a_password_from_the_environment_is_taken_verbatim_and_never_shown(tmp_path: Path, password: str) -> None:
    main = config_dir(tmp_path)
    env = {"GRIDVERSE_MQTT__USERNAME": "gw", "GRIDVERSE_MQTT__PASSWORD": password}
    settings = load_settings(main, environ=env)
    assert settings.mqtt.password is not None and settings.mqtt.password.get_secret_value() == password
    assert redacted(settings)["mqtt"]["password"] == "***"


def test_an_invalid_secret_from_the_environment_is_never_echoed(tmp_path: Path) -> None:
    main = config_dir(tmp_path)
    secret = "hunter2-do-not-print"
    env = {
        "GRIDVERSE_MQTT__PASSWD": secret,  # misspelt key
        "GRIDVERSE_HISTORIAN__INFLUX__TOKEN__VALUE": secret,  # a token is a string, not a mapping
        "GRIDVERSE_MQTT__PORT": "70000",  # a real problem beside them, which is shown
    }
    message = _problems(main, env)
    assert "GRIDVERSE_MQTT__PASSWD" in message and "GRIDVERSE_HISTORIAN__INFLUX__TOKEN__VALUE" in message
    assert "70000" in message and secret not in message
    result = _cli(main, "config", "check", env=env)
    assert result.returncode == 2 and secret not in result.stdout + result.stderr


def test_embedded_broker_with_a_user_needs_a_password(tmp_path: Path) -> None:
    message = _problems(config_dir(tmp_path), {"GRIDVERSE_MQTT__USERNAME": "gw"})
    assert "mqtt" in message and "GRIDVERSE_MQTT__PASSWORD" in message


def test_non_pandapower_network_file_at_twin_start_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    bogus = tmp_path / "grid.json"
    bogus.write_text("[1, 2, 3]")
    main = config_dir(tmp_path, lambda d: d["site"].update(network={"file": str(bogus)}))
    result = _cli(main, "run", "twin")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"network error: {bogus}: not a pandapower network" in result.stderr
