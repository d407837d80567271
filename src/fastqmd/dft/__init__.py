"""Real-space finite-difference Kohn–Sham DFT (the high-fidelity model of MOR-QMD).

Contract: atoms (positions in Bohr, element symbols) → `Grid` (uniform orthorhombic, periodic or isolated) →
energy terms (kinetic FD Laplacian, GTH local/nonlocal pseudopotentials, Hartree with Gaussian compensating
charges, LDA/PBE exchange–correlation, ion–ion) → `scf(model, grid, eigensolver=, mixer=)` → `SCFResult`
(orbitals, occupations, density, effective potential, energy terms) → `hellmann_feynman_forces(result)`.
Inside this package everything is in atomic units (Hartree, Bohr); the ASE calculator in `calculator.py` is
the one place that converts to eV/Å. Orbitals are stored as orthonormal vectors U [n_states, n_grid] with
U Uᵀ = 1 (so ψ = U/√dV); the density is n(r) = Σ_n o_n |U_n(r)|² / dV with o_n ∈ [0, 2]. See docs/RSDFT.md.
"""

from fastqmd.dft.forces import hellmann_feynman_forces
from fastqmd.dft.grid import Grid
from fastqmd.dft.scf import Model, SCFResult, scf

__all__ = ["Grid", "Model", "SCFResult", "scf", "hellmann_feynman_forces"]
