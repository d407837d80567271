"""The error taxonomy of fastqmd (after ASE's `CalculatorSetupError` / `CalculationFailed`), mapped once in
`fastqmd.cli.main`:

- `InputError` — the user's input is wrong (config, structure, file, path, option, a model that does not fit
  the data). CLI: one line `error: …`, exit code 2, and nothing of an existing output has changed.
- `CalculationFailed` — valid input, but a calculation did not succeed (SCF not converged, MD blow-up, an
  overlap matrix that is not positive definite, an unconverged real-space SCF). CLI: one line `error: …`,
  exit code 3; long jobs save their last good state before raising it.

Both derive from the ASE classes of the same meaning, so code that catches ASE's errors around a fastqmd
calculator keeps working.
"""

from __future__ import annotations

from ase.calculators.calculator import CalculationFailed as _ASECalculationFailed
from ase.calculators.calculator import CalculatorSetupError


class InputError(CalculatorSetupError, ValueError):
    """Bad user input (config, structure, file, path). The message is shown to the user as is."""


class CalculationFailed(_ASECalculationFailed):
    """A calculation on valid input failed (no convergence, blow-up, indefinite S). The message is shown as is."""


EXIT_INPUT = 2
EXIT_CALCULATION = 3
