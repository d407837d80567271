"""Real-space finite-difference Kohn–Sham DFT (the high-fidelity model of MOR-QMD).

Contract: atoms (positions in Bohr, element symbols) → `Grid` (uniform orthorhombic, periodic or isolated) →
energy terms (terms.py: kinetic FD Laplacian, GTH local/nonlocal pseudopotentials, Hartree with Gaussian compensating
charges, LDA/PBE exchange–correlation, ion–ion) → `scf(model, grid, eigensolver=, mixer=)` → `SCFResult`
(orbitals, occupations, density, effective potential, energy terms) → `hellmann_feynman_forces(result)`.
Inside this package everything is in atomic units (Hartree, Bohr); the ASE calculator in `calculator.py` is
the one place that converts to eV/Å. Orbitals are stored as orthonormal vectors U [n_states, n_grid] with
U Uᵀ = 1 (so ψ = U/√dV); the density is n(r) = Σ_n o_n |U_n(r)|² / dV with o_n ∈ [0, 2]. See docs/RSDFT.md.
"""

import importlib

# Lazy re-exports (PEP 562): the CLI imports fastqmd.dft.commands without the solver's dependencies.
_EXPORTS = {"hellmann_feynman_forces": "forces", "Grid": "grid", "Model": "scf", "SCFResult": "scf", "scf": "scf",
            "SCFNotConverged": "scf"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fastqmd.dft.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fastqmd.dft' has no attribute {name!r}")


__all__ = ["Grid", "Model", "SCFResult", "SCFNotConverged", "scf", "hellmann_feynman_forces"]
