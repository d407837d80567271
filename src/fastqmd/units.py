"""Physical constants and unit conversions, in one place.

Public APIs and files use ASE units: energies in eV, lengths in Å, forces in eV/Å, time in fs, masses in amu.
Modules that work in atomic units internally (PySCF, the real-space solver) convert at their boundary with
these constants, which are ASE's CODATA values so that round trips through ASE are exact.
"""

from ase import units as _u

HARTREE_EV: float = _u.Hartree  # 1 Eh in eV
BOHR_ANG: float = _u.Bohr  # 1 a0 in Å
KB_EV: float = _u.kB  # Boltzmann constant in eV/K
FS: float = _u.fs  # 1 fs in ASE time units
HA_PER_BOHR_TO_EV_PER_ANG: float = HARTREE_EV / BOHR_ANG
HBAR_EV_ASE_TIME: float = _u._hbar * _u.J * _u.s  # ħ in eV·(ASE time unit): ħω with ω² in eV/(Å² amu)
THZ_TO_INV_CM: float = 1e10 / _u._c  # ν̃ [cm⁻¹] = ν [THz] · 10¹² / (c [m/s] · 100)
