"""MOR-QMD: a reduced-order model of the real-space Kohn–Sham solver (`fastqmd.dft`), after Cheung, Fattebert,
Choi and Osei-Kuffuor (seed 003; docs/MOR.md).

Contract, offline → online (atomic units inside — Ha, Bohr; eV/Å at the ASE calculator):
- `frame`:     positions → `Frame` (R, t, label permutation) into the molecule's canonical frame, and back
               (positions and forces), by a `FrameRecipe` (pinned atom, two frame atoms, tie rule).
- `sampling`:  internal-coordinate grids (`GridSamplingConfig`: bond factors × angles) → canonical geometries
               (Bohr, or ASE Atoms in Å), each tagged reproductive (on the training grid) or predictive.
- `snapshots`: a `SnapshotsConfig` → Hi-Fi SCF solves warm-started along the ordered grid → one HDF5 file of
               converged orbitals U [k, n_grid] (U Uᵀ = 1, ψ = U/√dV), occupations, eigenvalues, density, energy
               terms and forces per geometry (resumable, locked, Dask chains).
- `basis`:     snapshots → thin SVD → `Basis` (orthonormal rows, singular values, rank by 1 − ε with σ or σ²,
               grid / model / recipe descriptions to refuse a mismatched use); `save_basis` / `load_basis`.
- `online`, `calculator`: the reduced Mermin solver and the ASE `MORCalculator` on a `Basis`.
Nothing heavy is imported here; import the submodules.
"""
