"""Configuration plumbing shared by every command: frozen pydantic models that reject unknown keys, YAML
loading with one-line errors, and the formatting of validation errors for the CLI.

Configs only describe; library code acts. A config that names an unknown key, a wrong type or an
unreadable file raises `InputError` (CLI: one line, exit code 2) before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from fastqmd.errors import InputError


class FrozenModel(BaseModel):
    """Base of all fastqmd configs: immutable, unknown keys rejected, types validated strictly enough."""

    model_config = ConfigDict(frozen=True, extra="forbid")


M = TypeVar("M", bound=BaseModel)


def format_validation_error(exc: ValidationError) -> str:
    """One line for the first problem of a pydantic error: `config key 'a.b': message (+N more)`."""
    errs = exc.errors()
    e = errs[0]
    loc = ".".join(str(p) for p in e.get("loc", ()))
    kind = e.get("type", "")
    if kind == "extra_forbidden":
        msg = f"unknown config key '{loc}'"
    elif kind == "missing":
        msg = f"missing config key '{loc}'"
    else:
        msg = f"config key '{loc}': {e.get('msg', 'invalid')}"
        if "input" in e and not isinstance(e["input"], dict | list):
            msg += f" (got {e['input']!r})"
    if len(errs) > 1:
        msg += f" (+{len(errs) - 1} more)"
    return msg


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; any I/O or syntax problem becomes an InputError with one line."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config {p}: {exc}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise InputError(f"invalid YAML in {p}{where}") from None
    if not isinstance(data, dict):
        raise InputError(f"config {p} must be a YAML mapping at top level")
    return data


def load_config(model: type[M], path: str | Path) -> M:
    """Parse and validate a YAML config file into `model`; errors become one-line InputErrors."""
    data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{Path(path).name}: {format_validation_error(exc)}") from None
