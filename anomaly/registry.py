"""The model registry: versioned, reproducible anomaly models and which one is deployed.

Layout under the registry root (`anomaly.models_dir`, default `var/models`)::

    NAME/v1/model.joblib   the fitted estimator (joblib)
    NAME/v1/card.json      name, version, created, parameters, training data and its hash,
                           library versions (sklearn, numpy, pandas, gridverse), evaluation report
    deployed               "NAME/vN": the model `detect` and the live detectors use

The repository ships a small trained model in `anomaly/models/default/` (same two files); it is
used when nothing is deployed. Loading a model saved with other library versions warns and names
them (joblib pickles are only guaranteed to load with the versions that wrote them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODEL_FILE, CARD_FILE, DEPLOYED_FILE = "model.joblib", "card.json", "deployed"
SHIPPED_DEFAULT = Path(__file__).parent / "models" / "default"
DEFAULT_NAME = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HASHED_FILES = ("network.json", "points.csv", "telemetry.csv.gz", "labels.csv")


class RegistryError(ValueError):
    """A model that cannot be stored, found or loaded; the message names it and the remedy."""


class ModelVersionWarning(UserWarning):
    """The model was saved with other library versions than the ones running now."""


@dataclass
class ModelCard:
    """What is known about one stored model version."""

    name: str
    version: int
    created: str
    params: dict[str, Any]
    data: list[str]
    data_hash: str
    libraries: dict[str, str]
    report: dict[str, Any] | None = None
    train_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}/v{self.version}"


def library_versions() -> dict[str, str]:
    """The versions a joblib model depends on."""
    out = {}
    for dist in ("scikit-learn", "numpy", "pandas", "gridverse"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def data_hash(directories: Iterable[Path | str]) -> str:
    """SHA-256 over the scenario files of each directory (in the order given), so a model names its data."""
    digest = hashlib.sha256()
    for directory in directories:
        for name in _HASHED_FILES:
            path = Path(directory) / name
            if path.exists():
                digest.update(name.encode())
                with path.open("rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
    return "sha256:" + digest.hexdigest()


def _jsonable(value: Any) -> Any:
    """Parameters as JSON: estimators and other objects by their repr."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _read_card(directory: Path) -> ModelCard:
    path = directory / CARD_FILE
    try:
        raw = json.loads(path.read_text())
        raw["path"] = str(directory)
        return ModelCard(**raw)
    except FileNotFoundError:
        raise RegistryError(f"{path}: not found; this folder is not a stored model (train one with `train`)") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise RegistryError(f"{path}: not a model card ({exc}); retrain the model") from None


class ModelRegistry:
    """A directory of versioned models with a `deployed` pointer."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _check_name(self, name: str) -> None:
        if not _NAME.match(name):
            raise RegistryError(
                f"model name {name!r}: use letters, digits, '_', '.' or '-' (up to 64, starting with a letter or digit)"
            )

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(int(p.name[1:]) for p in folder.iterdir() if re.fullmatch(r"v\d+", p.name) and p.is_dir())

    def save(
        self,
        name: str,
        model: Any,
        *,
        data: Iterable[Path | str] = (),
        report: dict[str, Any] | None = None,
        train_s: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ModelCard:
        """Store a fitted model as the next version of `name`; returns its card."""
        import joblib

        self._check_name(name)
        sources = [str(Path(d).resolve()) for d in data]
        version = (self.versions(name) or [0])[-1] + 1
        folder = self.root / name / f"v{version}"
        folder.mkdir(parents=True, exist_ok=False)
        params = _jsonable(model.get_params(deep=False)) if hasattr(model, "get_params") else {}
        card = ModelCard(
            name=name,
            version=version,
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            params=params,
            data=sources,
            data_hash=data_hash(sources),
            libraries=library_versions(),
            report=report,
            train_s=train_s,
            extra=extra or {},
        )
        joblib.dump(model, folder / MODEL_FILE, compress=3)
        record = asdict(card)
        record.pop("path")
        (folder / CARD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        card.path = str(folder)
        return card

    def cards(self) -> list[ModelCard]:
        """Every stored version, by name then version; the shipped default last."""
        out = []
        if self.root.is_dir():
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
                for v in self.versions(folder.name):
                    try:
                        out.append(_read_card(folder / f"v{v}"))
                    except RegistryError as exc:
                        log.warning("%s", exc)
        if (SHIPPED_DEFAULT / CARD_FILE).exists():
            out.append(_read_card(SHIPPED_DEFAULT))
        return out

    def deployed_ref(self) -> str | None:
        """The deployed model as "NAME/vN", or None (then the shipped default is used)."""
        path = self.root / DEPLOYED_FILE
        return path.read_text().strip() or None if path.exists() else None

    def resolve(self, ref: str | None = None) -> Path:
        """The folder of a model: "NAME" (newest version), "NAME/vN", or None for the deployed one."""
        if ref is None:
            ref = self.deployed_ref()
            if ref is None:
                if (SHIPPED_DEFAULT / MODEL_FILE).exists():
                    return SHIPPED_DEFAULT
                raise RegistryError(
                    f"{self.root / DEPLOYED_FILE}: no model is deployed and none is shipped; "
                    "train one (gridverse anomaly train --data DIR --model NAME) or name one with --model"
                )
        name, _, version = ref.partition("/")
        self._check_name(name)
        versions = self.versions(name)
        if not versions:
            if name == DEFAULT_NAME and (SHIPPED_DEFAULT / MODEL_FILE).exists():
                return SHIPPED_DEFAULT
            known = sorted({c.name for c in self.cards()})
            raise RegistryError(f"model {name!r} is not in the registry {self.root} (known: {known}); train it first")
        if version:
            if not re.fullmatch(r"v\d+", version) or int(version[1:]) not in versions:
                raise RegistryError(
                    f"model {name!r} has no version {version!r} in {self.root} "
                    f"(versions: {[f'v{v}' for v in versions]})"
                )
            return self.root / name / version
        return self.root / name / f"v{versions[-1]}"

    def deploy(
        self, ref: str, *, audit: Any = None, actor: str = "", role: str = "", source: str = "", reason: str = ""
    ) -> ModelCard:
        """Point `deployed` at a model ("NAME" means its newest version). With `audit` (an
        `gridverse.audit.AuditRecord`) the deployment is recorded first, as `model.deploy` by
        `actor` with the model deployed before and after; if it cannot be recorded, nothing is deployed."""
        folder = self.resolve(ref)
        card = _read_card(folder)
        if audit is not None:
            audit.append(
                actor,
                role,
                "model.deploy",
                card.ref,
                source=source,
                before={"deployed": self.deployed_ref() or f"{DEFAULT_NAME} (shipped)"},
                after={"deployed": card.ref, "data_hash": card.data_hash, "f1": (card.report or {}).get("f1")},
                reason=reason,
            )
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / DEPLOYED_FILE).write_text(card.ref + "\n")
        return card

    def load(self, ref: str | None = None) -> tuple[Any, ModelCard]:
        """The model and its card; warns (ModelVersionWarning) when saved with other library versions."""
        return load_folder(self.resolve(ref))


def version_mismatch(card: ModelCard) -> str | None:
    """What differs between the library versions a model was saved with and those running now
    (naming each library and both versions), or None when they are the same."""
    now = library_versions()
    differ = {k: (v, now.get(k)) for k, v in card.libraries.items() if now.get(k) != v}
    if not differ:
        return None
    said = ", ".join(f"{k} {old} (now {new})" for k, (old, new) in sorted(differ.items()))
    return f"model {card.ref} was saved with {said}; it may load wrongly or score differently: retrain it"


def load_folder(folder: Path | str) -> tuple[Any, ModelCard]:
    """The model stored in one folder (of any registry, or the shipped default) and its card;
    warns (ModelVersionWarning) when it was saved with other library versions."""
    import joblib

    folder = Path(folder)
    card = _read_card(folder)
    message = version_mismatch(card)
    if message:
        log.warning("%s", message)
        warnings.warn(message, ModelVersionWarning, stacklevel=2)
    try:
        model = joblib.load(folder / MODEL_FILE)
    except FileNotFoundError:
        raise RegistryError(f"{folder / MODEL_FILE}: not found; retrain model {card.ref}") from None
    except Exception as exc:
        raise RegistryError(
            f"{folder / MODEL_FILE}: cannot be loaded ({type(exc).__name__}: {str(exc)[:160]}); "
            f"retrain model {card.ref} with the libraries installed now"
        ) from None
    return model, card
