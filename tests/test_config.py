"""Configuration: what an operator sees when a file is right, wrong, or carries a secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gridverse.settings import ConfigError, load_settings, redacted
from tests.helpers import config_dir


def test_shipped_configuration_is_valid() -> None:
    settings = load_settings()
    assert {"feeder_ied", "transformer_ied", "secondary_rtu"} <= set(settings.profiles)
    assert settings.assets["primary"], "the inspected substation has equipment"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothere\.yaml: file not found"):
        load_settings(tmp_path / "nothere.yaml")


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    main = config_dir(tmp_path)
    main.write_text(main.read_text() + "\nsite: [unclosed\n")
    with pytest.raises(ConfigError, match=r"gridverse\.yaml: line \d+, column \d+: not valid YAML"):
        load_settings(main)


def test_unknown_register_type_names_file_and_point(tmp_path: Path) -> None:
    main = config_dir(tmp_path)
    profile = main.parent / "profiles" / "feeder_ied.yaml"
    doc = yaml.safe_load(profile.read_text())
    doc["points"][1]["type"] = "int24"
    profile.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_settings(main)
    message = str(err.value)
    assert "feeder_ied.yaml" in message and "points.1(MMXU1.TotVAr).type" in message and "int24" in message


def test_overlapping_registers_are_rejected(tmp_path: Path) -> None:
    main = config_dir(tmp_path)
    profile = main.parent / "profiles" / "feeder_ied.yaml"
    doc = yaml.safe_load(profile.read_text())
    doc["points"][1]["address"] = 1  # TotVAr now overlaps the 32-bit TotW at 0-1
    profile.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="MMXU1.TotVAr overlaps MMXU1.TotW at input register 1"):
        load_settings(main)


def test_unknown_profile_reference(tmp_path: Path) -> None:
    main = config_dir(tmp_path, lambda d: d["site"]["substations"][0]["devices"][0].update(profile="no_such_profile"))
    with pytest.raises(ConfigError, match="unknown profile 'no_such_profile'"):
        load_settings(main)


def test_secret_in_file_is_refused_with_the_variable_to_use(tmp_path: Path) -> None:
    main = config_dir(tmp_path, lambda d: d["mqtt"].update(password="hunter2"))
    with pytest.raises(ConfigError, match="GRIDVERSE_MQTT__PASSWORD"):
        load_settings(main)


def test_environment_overrides_and_secrets_are_redacted(tmp_path: Path) -> None:
    main = config_dir(tmp_path)
    env = {
        "GRIDVERSE_MQTT__PORT": "2883",
        "GRIDVERSE_MQTT__USERNAME": "gw",
        "GRIDVERSE_MQTT__PASSWORD": "s3cret-pw",
        "GRIDVERSE_HISTORIAN__INFLUX__TOKEN": "tok-123",
    }
    settings = load_settings(main, environ=env)
    assert settings.mqtt.port == 2883
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret-pw"
    shown = yaml.safe_dump(redacted(settings))
    assert "s3cret-pw" not in shown and "tok-123" not in shown
    assert "password: '***'" in shown and "token: '***'" in shown


def test_cli_reports_bad_config_without_traceback(tmp_path: Path) -> None:
    main = config_dir(tmp_path, lambda d: d["gateway"].update(poll_interval_s=-1))
    result = subprocess.run(
        [sys.executable, "-m", "gridverse.cli", "--config", str(main), "config", "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "gateway.poll_interval_s" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_config_show_redacts(tmp_path: Path) -> None:
    main = config_dir(tmp_path)
    env = {"GRIDVERSE_HISTORIAN__INFLUX__TOKEN": "very-secret-token", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "gridverse.cli", "--config", str(main), "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "very-secret-token" not in result.stdout and "token: '***'" in result.stdout
