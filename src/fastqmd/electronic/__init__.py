"""Electronic-structure math shared by the NN Hamiltonian (nnh) and reduced-order (mor) models. Torch, float64.

In:  real-space blocks H(R), S(R) [n_shifts, nao, nao] on integer shifts R, or k-space H(k), S(k) [nk, nao, nao]
     (Hermitian; real at Γ, complex otherwise), fractional k-points with weights summing to 1, the electron
     count N_e, the electronic temperature kT (eV) and the spin factor g (2 = closed shell).
Out: H(k) = Σ_R e^{i2πk·R} H(R) (kspace), Fermi–Dirac occupations with μ from N_e and the entropy
     (occupations), the Mermin free energy A = Σ_k w_k Σ_n f ε − kT S_el with ∂A/∂H = ρ, ∂A/∂S = −W and a
     double backward that stays finite at degenerate eigenvalues (free_energy), DOS and band structures (dos).
Units: energies in eV (H, ε, μ, kT, A); S dimensionless; k in reduced coordinates.
Conventions: H(R)_μν = ⟨μ,0|H|ν,R⟩, H(−R) = H(R)ᵀ; occupations include the spin factor; gradients w.r.t.
complex H follow torch's convention (for a real loss, the gradient w.r.t. a Hermitian H is ρ itself).
A non-positive-definite S raises `OverlapNotPositiveDefiniteError` (a `fastqmd.errors.CalculationFailed`).
Pure math: nothing here imports a model package (nnh, mor, …); tests/electronic/test_elec_boundaries.py checks it.
"""

from fastqmd.electronic.dos import band_structure, gaussian_dos, integrated_dos
from fastqmd.electronic.free_energy import (
    OverlapNotPositiveDefiniteError,
    Spectrum,
    density_matrices,
    fermi_divided_differences,
    free_energy,
    solve_spectrum,
)
from fastqmd.electronic.kspace import assemble_shift_blocks, bloch_sum, hermiticity_error, monkhorst_pack
from fastqmd.electronic.occupations import aufbau_occupations, fermi_dirac, fermi_entropy, fermi_level, occupations

__all__ = [
    "OverlapNotPositiveDefiniteError",
    "Spectrum",
    "assemble_shift_blocks",
    "aufbau_occupations",
    "band_structure",
    "bloch_sum",
    "density_matrices",
    "fermi_dirac",
    "fermi_divided_differences",
    "fermi_entropy",
    "fermi_level",
    "free_energy",
    "gaussian_dos",
    "hermiticity_error",
    "integrated_dos",
    "monkhorst_pack",
    "occupations",
    "solve_spectrum",
]
