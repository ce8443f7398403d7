"""Load the effective configuration: YAML files, then `GRIDVERSE_…` environment overrides.

Secrets (passwords, tokens) are accepted only from the environment, never from a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gridverse.config import SECRET_PATHS, DeviceProfile, Settings

ENV_PREFIX = "GRIDVERSE_"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "gridverse.yaml"


class ConfigError(Exception):
    """A configuration problem: carries the file, the key path and what to do about it."""


def default_config_path() -> Path:
    return Path(os.environ.get("GRIDVERSE_CONFIG", DEFAULT_CONFIG))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; pass --config PATH or set GRIDVERSE_CONFIG") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None


def _mapping(path: Path, data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    """`GRIDVERSE_MQTT__HOST=broker` → (["mqtt", "host"], "broker"); values parsed as YAML."""
    out = []
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        out.append((path, value))
    return sorted(out)


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _get_path(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _describe_location(tree: Any, loc: tuple[Any, ...]) -> str:
    """`site.substations.0.devices.2` → with each named list entry shown, e.g. `devices.2(F3)`."""
    parts, node = [], tree
    for key in loc:
        node = (
            node.get(key)
            if isinstance(node, dict)
            else (node[key] if isinstance(node, list) and isinstance(key, int) and key < len(node) else None)
        )
        name = node.get("name") if isinstance(node, dict) else None
        parts.append(f"{key}({name})" if isinstance(key, int) and name else str(key))
    return ".".join(parts) or "(top level)"


def _format_validation(path: Path, exc: ValidationError, tree: Any = None) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        loc = _describe_location(tree, err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        if err["type"] not in ("missing",) and isinstance(given, (str, int, float, bool)):
            msg += f" (got {given!r})"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_settings(config_path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the main file, the profiles beside it and the asset list, apply the environment."""
    path = Path(config_path) if config_path else default_config_path()
    environ = os.environ if environ is None else environ
    tree = _mapping(path, _read_yaml(path))

    for secret in SECRET_PATHS:
        if _get_path(tree, secret) is not None:
            env_name = ENV_PREFIX + secret.upper().replace(".", "__")
            raise ConfigError(f"{path}: {secret}: secrets are not read from files; remove it and set {env_name}")

    profiles_dir = path.parent / "profiles"
    profiles: dict[str, Any] = {}
    for profile_file in sorted(profiles_dir.glob("*.yaml")):
        data = _mapping(profile_file, _read_yaml(profile_file))
        name = data.get("name", profile_file.stem)
        if name != profile_file.stem:
            raise ConfigError(f"{profile_file}: name {name!r} must match the file name")
        try:
            profiles[name] = DeviceProfile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_format_validation(profile_file, exc, data)) from None
    tree["profiles"] = profiles

    assets_file = path.parent / "assets.yaml"
    if assets_file.exists() and "assets" not in tree:
        tree["assets"] = _mapping(assets_file, _read_yaml(assets_file))

    for key_path, value in _env_overrides(environ):
        _set_path(tree, key_path, value)

    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc, tree)) from None
    return settings


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with every secret replaced by '***'."""
    data = settings.model_dump(mode="json")
    for secret in SECRET_PATHS:
        parent_path, _, leaf = secret.rpartition(".")
        parent = _get_path(data, parent_path)
        if isinstance(parent, dict) and parent.get(leaf) is not None:
            parent[leaf] = "***"
    return data
