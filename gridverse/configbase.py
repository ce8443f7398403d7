"""The base of every configuration section, shared by the parts' own config modules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("a TCP port is 1-65535")
    return value


#: A TCP port someone must know in advance (to listen on or connect to): 1-65535. No setting
#: takes 0 ("pick a free one"), because every port here is one other processes connect to.
Port = Annotated[int, AfterValidator(_check_port)]


def _check_readable_file(value: Path) -> Path:
    if not value.is_file():
        where = "" if value.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise ValueError(f"file {str(value)!r} not found{where}; give the path of an existing file")
    if not os.access(value, os.R_OK):
        raise ValueError(f"file {str(value)!r} is not readable by this user; fix its permissions")
    return value


#: A file that must exist and be readable when the configuration is loaded (certificates, networks),
#: so that `config check` finds it missing rather than the first connect.
ReadableFile = Annotated[Path, AfterValidator(_check_readable_file)]
