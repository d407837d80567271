"""Range checks for numeric command-line options, as typer callbacks.

An out-of-range value (`--steps 0`, `--workers -1`, `--rmax -3`) raises `InputError` while the arguments are
parsed, so it ends like every other bad input — one line `error: …`, exit code 2, nothing written — instead
of click's usage box. Only typer is imported here: the CLI builds its options at start-up.
"""

from __future__ import annotations

import typer


def at_least(minimum: float):
    """Callback: the option's value must be ≥ `minimum` (None, an unset option, passes)."""
    return _bound(minimum, strict=False)


def above(minimum: float):
    """Callback: the option's value must be > `minimum` (None passes)."""
    return _bound(minimum, strict=True)


def _bound(minimum: float, strict: bool):
    def check(param: typer.CallbackParam, value):
        if value is not None and (value <= minimum if strict else value < minimum):
            from fastqmd.errors import InputError

            name = max(param.opts, key=len) if param.opts else param.name
            raise InputError(f"{name} must be {'>' if strict else '≥'} {minimum:g}, got {value:g}")
        return value

    return check
