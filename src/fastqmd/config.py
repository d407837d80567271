"""Configuration plumbing shared by every command: frozen pydantic models that reject unknown keys, YAML
loading with one-line errors, the formatting of validation errors for the CLI (every problem named), and the
checks of output paths that commands run before they write anything.

Configs only describe; library code acts. A config that names an unknown key, a wrong type or an
unreadable file raises `InputError` (CLI: one line, exit code 2) before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from fastqmd.errors import InputError


class FrozenModel(BaseModel):
    """Base of all fastqmd configs: immutable, unknown keys rejected, types validated strictly enough."""

    model_config = ConfigDict(frozen=True, extra="forbid")


M = TypeVar("M", bound=BaseModel)


def format_validation_error(exc: ValidationError, data=None) -> str:
    """One line naming every problem of a pydantic error: `missing config key 'a'; config key 'b.c': msg …`.

    With the validated `data`, locations are spelled as the user wrote them: the tag pydantic inserts for a
    discriminated union (`structure.rattled_bulk.supercell`) is left out (`structure.supercell`)."""
    return "; ".join(_problem(e, data) for e in exc.errors())


def _problem(e, data) -> str:
    loc = _location(e.get("loc", ()), data)
    kind, ctx = e.get("type", ""), e.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown config key '{loc}'"
    if kind == "missing":
        return f"missing config key '{loc}'"
    if kind == "union_tag_not_found":
        return f"missing config key '{_join(loc, str(ctx.get('discriminator', 'kind')).strip(chr(39)))}'"
    if kind == "union_tag_invalid":
        key = _join(loc, str(ctx.get("discriminator", "kind")).strip("'"))
        return f"config key '{key}': unknown kind {ctx.get('tag')!r} (expected one of {ctx.get('expected_tags')})"
    msg = f"config key '{loc}': {e.get('msg', 'invalid')}"
    if "input" in e and not isinstance(e["input"], dict | list):
        msg += f" (got {e['input']!r})"
    return msg


def _location(loc: tuple, data) -> str:
    """'a.b.c' from a pydantic loc, skipping discriminated-union tags that are not keys of `data`."""
    parts, node = [], data
    for p in loc:
        if isinstance(node, dict) and p not in node and p == node.get("kind"):
            continue  # the union member pydantic tried, named by its tag
        parts.append(str(p))
        if isinstance(node, dict):
            node = node.get(p)
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
        else:
            node = None
    return ".".join(parts)


def _join(loc: str, key: str) -> str:
    return f"{loc}.{key}" if loc else key


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
        raise InputError(f"{Path(path).name}: {format_validation_error(exc, data)}") from None


# ---------------------------------------------------------------- output paths, checked before anything is written


def check_output_file(path: str | Path, overwrite: bool | None = None, inputs: tuple = ()) -> Path:
    """A file a command is about to write: its folder must exist, it must not be a folder or one of the
    command's `inputs` (also through a symlink or another relative path), and with `overwrite=False` it must
    not exist yet (`None`: a derived file that is simply replaced)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"output {p} is a folder; give a file name")
    parent = p.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise InputError(f"cannot write {p}: the folder {parent} {what}")
    for q in inputs:
        if _same_file(p, Path(q)):
            raise InputError(f"output {p} is the input {q}; choose another output file")
    if overwrite is False and p.exists():
        raise InputError(f"{p} exists; pass --overwrite to replace it")
    return p


def check_output_dir(path: str | Path) -> Path:
    """A folder a command will create (with its parents) once its input is valid: neither it nor an ancestor
    may be a file. Nothing is created here."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise InputError(f"output folder {p}: {q} is a file, not a folder")
            break
    return p


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
