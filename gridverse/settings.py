"""Load the effective configuration: YAML files, then `GRIDVERSE_…` environment overrides.

Every problem in every file is reported in one run, each under the file (or environment
variable) that holds its key. Secrets (passwords, tokens) are accepted only from the environment,
never from a file, and never echoed back in an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from gridverse.config import SECRET_PATHS, DeviceProfile, Settings, reference_problems

ENV_PREFIX = "GRIDVERSE_"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "gridverse.yaml"

#: Key names whose values are never shown, wherever they appear (also misspelt keys like `passwd`).
_SECRET_WORDS = ("pass", "token", "secret")
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is (a file or `environment`), the key path, what is wrong."""

    source: str
    where: str
    message: str


def format_problems(problems: Iterable[Problem]) -> str:
    """Problems grouped by the file that holds them, in the order found."""
    problems = list(problems)
    by_source: dict[str, list[Problem]] = {}
    for problem in problems:
        by_source.setdefault(problem.source, []).append(problem)
    lines = [f"{len(problems)} problems in {len(by_source)} place(s):"] if len(problems) > 1 else []
    for source, group in by_source.items():
        keyed = [p for p in group if p.where]
        lines.extend(f"{source}: {p.message}" for p in group if not p.where)
        if keyed:
            lines.append(f"{source}: {len(keyed)} problem(s)")
            lines.extend(f"  {p.where}: {p.message}" for p in keyed)
    return "\n".join(lines)


class ConfigError(Exception):
    """A configuration problem: carries the file, the key path and what to do about it."""

    def __init__(self, problems: str | list[Problem]) -> None:
        self.problems = [Problem("", "", problems)] if isinstance(problems, str) else list(problems)
        super().__init__(problems if isinstance(problems, str) else format_problems(problems))


def default_config_path() -> Path:
    return Path(os.environ.get("GRIDVERSE_CONFIG", DEFAULT_CONFIG))


def scrub(text: str) -> str:
    """`http://user:pass@host` → `http://***@host`: credentials in a URL are never shown."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; this loader records every duplicate."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[Any, int, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                self.duplicates.append((key, first_line[key], line))
            else:
                first_line[key] = line
        return super().construct_mapping(node, deep)


_FAILED = object()


def _read_yaml(path: Path, problems: list[Problem]) -> Any:
    """The document, or `_FAILED` with the reason added to `problems`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(Problem(str(path), "", "file not found; pass --config PATH or set GRIDVERSE_CONFIG"))
        return _FAILED
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(str(path), "", f"cannot read ({getattr(exc, 'strerror', None) or exc})"))
        return _FAILED
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(str(path), "", f"{where}not valid YAML: {problem}"))
        return _FAILED
    finally:
        loader.dispose()
    for key, first, second in loader.duplicates:
        problems.append(
            Problem(
                str(path),
                "",
                f"line {second}: key {key!r} is given twice (first at line {first}); YAML would silently keep "
                "only the last: remove or merge one",
            )
        )
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(Problem(str(path), "", f"the top level must be a mapping of keys, not {type(data).__name__}"))
        return _FAILED
    return data


def _is_secret_path(path: Iterable[Any]) -> bool:
    return any(isinstance(p, str) and any(w in p.lower() for w in _SECRET_WORDS) for p in path)


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any, str]]:
    """`GRIDVERSE_MQTT__HOST=broker` → (["mqtt", "host"], "broker", name); values parsed as YAML,
    except secrets, which stay the exact string given (a password `123456` is not a number)."""
    out = []
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
        if _is_secret_path(path):
            value: Any = raw
        else:
            try:
                value = yaml.safe_load(raw) if raw != "" else None
            except yaml.YAMLError:
                value = raw
        out.append((path, value, key))
    return sorted(out, key=lambda item: item[0])


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


def _error_message(err: Mapping[str, Any], from_environment: bool) -> str:
    """Pydantic's message, with the value given unless it could be a secret."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    given = err.get("input")
    secret = _is_secret_path(err["loc"]) or (from_environment and err["type"] == "extra_forbidden")
    if err["type"] != "missing" and not secret and isinstance(given, (str, int, float, bool)):
        msg += f" (got {scrub(repr(given))})"
    return scrub(msg)


class _Locator:
    """Says which file (or environment variable) holds the key at a location of the composed tree."""

    def __init__(self, main: Path, tree: dict[str, Any], assets_file: Path | None) -> None:
        self.main, self.tree, self.assets_file = main, tree, assets_file
        self.env: dict[tuple[str, ...], str] = {}

    def _variable(self, loc: tuple[Any, ...]) -> str | None:
        """The variable that set this key, a key above it, or (`…__TOKEN__VALUE`) one below it."""
        key = tuple(str(p) for p in loc)
        for n in range(len(key), 0, -1):
            if key[:n] in self.env:
                return self.env[key[:n]]
        below = [var for path, var in self.env.items() if key and path[: len(key)] == key]
        return below[0] if below else None

    def problem(self, loc: tuple[Any, ...], message: str) -> Problem:
        var = self._variable(loc)
        if var is not None:
            return Problem("environment", f"{var} ({_describe_location(self.tree, loc)})", message)
        if loc and loc[0] == "assets" and self.assets_file is not None:
            return Problem(str(self.assets_file), _describe_location(self.tree.get("assets"), loc[1:]), message)
        return Problem(str(self.main), _describe_location(self.tree, loc), message)

    def from_environment(self, loc: tuple[Any, ...]) -> bool:
        return self._variable(loc) is not None


def _validation_problems(source: Path, exc: ValidationError, tree: Any) -> list[Problem]:
    return [
        Problem(str(source), _describe_location(tree, err["loc"]), _error_message(err, False)) for err in exc.errors()
    ]


def _section(tree: Mapping[str, Any], name: str) -> Any:
    """One top-level section validated on its own (None if it is invalid or required and absent),
    so that cross-checks run even when another section has errors."""
    field = Settings.model_fields[name]
    if name not in tree:
        return None if field.is_required() else field.get_default(call_default_factory=True)
    try:
        return TypeAdapter(field.annotation).validate_python(tree[name])  # type: ignore[arg-type]
    except ValidationError:
        return None


def load_settings(config_path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the main file, the profiles beside it and the asset list, apply the environment; raise
    one ConfigError that lists every problem found, each with its file and key path."""
    path = Path(config_path) if config_path else default_config_path()
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    data = _read_yaml(path, problems)
    main_ok = data is not _FAILED
    tree: dict[str, Any] = data if main_ok else {}

    for secret in SECRET_PATHS:
        if _get_path(tree, secret) is not None:
            env_name = ENV_PREFIX + secret.upper().replace(".", "__")
            message = f"secrets are not read from files; remove it and set {env_name}"
            problems.append(Problem(str(path), secret, message))

    profiles: dict[str, DeviceProfile] = {}
    broken_profiles: set[str] = set()
    for profile_file in sorted((path.parent / "profiles").glob("*.yaml")):
        doc = _read_yaml(profile_file, problems)
        if doc is _FAILED:
            broken_profiles.add(profile_file.stem)
            continue
        name = doc.get("name", profile_file.stem)
        if name != profile_file.stem:
            problems.append(Problem(str(profile_file), "name", f"{name!r} must match the file name"))
            broken_profiles.add(profile_file.stem)
            continue
        try:
            profiles[name] = DeviceProfile.model_validate(doc)
        except ValidationError as exc:
            problems.extend(_validation_problems(profile_file, exc, doc))
            broken_profiles.add(name)
    tree["profiles"] = profiles

    assets_file: Path | None = path.parent / "assets.yaml"
    if "assets" in tree or not assets_file.exists():  # type: ignore[union-attr]
        assets_file = None
    else:
        assets = _read_yaml(assets_file, problems)  # type: ignore[arg-type]
        tree["assets"] = {} if assets is _FAILED else assets

    locate = _Locator(path, tree, assets_file)
    for key_path, value, var in _env_overrides(environ):
        _set_path(tree, key_path, value)
        locate.env[tuple(key_path)] = var

    settings: Settings | None = None
    if main_ok:
        try:
            settings = Settings.model_validate(tree, context={"defer_references": True})
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                problems.append(locate.problem(loc, _error_message(err, locate.from_environment(loc))))
        site = _section(tree, "site")
        if site is not None:
            found = reference_problems(
                site=site,
                profile_names=set(profiles) | broken_profiles,
                assets=_section(tree, "assets"),
                inspection=_section(tree, "inspection"),
                simulator=_section(tree, "simulator"),
            )
            problems.extend(locate.problem(loc, message) for loc, message in found)
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with every secret replaced by '***'."""
    data = settings.model_dump(mode="json")
    for secret in SECRET_PATHS:
        parent_path, _, leaf = secret.rpartition(".")
        parent = _get_path(data, parent_path)
        if isinstance(parent, dict) and parent.get(leaf) is not None:
            parent[leaf] = "***"
    influx = _get_path(data, "historian.influx")
    if isinstance(influx, dict) and isinstance(influx.get("url"), str):
        influx["url"] = scrub(influx["url"])
    return data
