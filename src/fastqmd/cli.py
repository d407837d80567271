"""The `fastqmd` command line: a thin typer layer that parses arguments/configs and calls library code.

Each subsystem contributes its commands through a `register(app)` function in its `commands` module; the
list below names the ones that exist. Errors of the user's making (`InputError`, invalid configs, unreadable
files) end as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="fastqmd",
    help="Quantum-accurate molecular dynamics at surrogate speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# subsystem command modules, each exposing register(app: typer.Typer) -> None
COMMAND_MODULES = [
    "fastqmd.data.commands",
    "fastqmd.md.commands",
    "fastqmd.analysis.commands",
    "fastqmd.dft.commands",
    "fastqmd.nnh.commands",
    "fastqmd.mor.commands",
    "fastqmd.mlip.commands",
    "fastqmd.mlip.finetune_commands",
    "fastqmd.domain_commands",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit with `code` (2: bad input, 3: a failed calculation)."""
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def main() -> None:
    """Console entry point: the one place where the error taxonomy (`fastqmd.errors`) meets exit codes.

    `InputError` (and pydantic validation errors) → one line, exit 2; `CalculationFailed` → one line, exit 3
    (the command has saved its last good state before raising). The ASE classes they derive from are mapped
    alike, so a third-party ASE calculator's `CalculatorSetupError` / `CalculationFailed` ends the same way.
    """
    from ase.calculators.calculator import CalculationFailed, CalculatorSetupError
    from pydantic import ValidationError

    from fastqmd.errors import EXIT_CALCULATION, EXIT_INPUT

    try:
        app()
    except CalculatorSetupError as exc:  # fastqmd.errors.InputError included
        fail(_one_line(exc), EXIT_INPUT)
    except ValidationError as exc:
        from fastqmd.config import format_validation_error

        fail(format_validation_error(exc), EXIT_INPUT)
    except CalculationFailed as exc:  # fastqmd.errors.CalculationFailed included
        fail(_one_line(exc), EXIT_CALCULATION)


def _one_line(exc: Exception) -> str:
    """The message's first line (fastqmd's own are one line; a third-party message may not be)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    main()
