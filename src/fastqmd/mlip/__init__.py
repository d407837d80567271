"""Machine-learned interatomic potentials (issue 12): models whose output is the energy itself.

Contract, for every MLIP in this package (learned here or pretrained elsewhere):
In:  a `fastqmd.potential.System` — positions [N, 3] Å, cell [3, 3] Å (rows; zeros for molecules), pbc,
     atomic numbers.
Out: `fastqmd.potential.Results` — energy (eV), forces [N, 3] eV/Å = −∂E/∂R, stress [3, 3] eV/Å³ (ASE sign,
     σ = (1/V) ∂E/∂ε) for periodic cells, declared in `capabilities`. So every MLIP drives `fastqmd md`, wraps
     as an ASE calculator (`fastqmd.potential.PotentialCalculator`) and is checked by `fastqmd.testing`.
Bad input is one `InputError`: an unknown model or checkpoint name, an element the model does not cover.

Modules: `universal` — SevenNet and CHGNet checkpoints shipped in their wheels, offline
(`potential: {kind: sevenn, model: 7net-0}` / `{kind: chgnet}` in `fastqmd md`; `fastqmd mlip evaluate`);
`commands` — the `fastqmd mlip` CLI. Importing this package imports neither torch nor the model libraries.
"""

import importlib

# Lazy re-exports (PEP 562): `import fastqmd.mlip` (the CLI does) stays light.
_EXPORTS = {
    "UniversalPotential": "universal",
    "available_models": "universal",
    "evaluate_universal": "universal",
    "load_universal": "universal",
    "universal_calculator": "universal",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
