"""PySCF molecular Kohn-Sham DFT as a fastqmd reference engine (all-electron Gaussian basis, spherical AOs).

In:  an ASE `Atoms` without periodicity (positions in Å).
Out: a `Sample`: energy (eV; the Mermin free energy E - σS when Fermi smearing is on), analytic forces
     (eV/Å, `nuc_grad_method` with the grid-response term, so F = -dE/dR to ~3e-5 eV/Å at grid level 3),
     Kohn-Sham matrix H (eV) and overlap S in the fastqmd real-SH ordering, orbital energies (eV),
     occupations, HOMO/LUMO and Fermi level.

Orbital ordering: PySCF (libcint) spherical AOs use the fastqmd real harmonics exactly for l = 0 and l ≥ 2
(same m = -l..l order, same signs, no Condon-Shortley phase), but order p shells (x, y, z); fastqmd's is
(y, z, x) = m = -1, 0, 1. `pyscf_to_fastqmd_perm` does the one permutation (checked numerically against
`mol.eval_gto` in tests/reference/test_ref_orbitals.py).

H is the matrix whose generalized eigenpairs PySCF reports: with C square and Cᵀ S C = 1, F C = S C ε gives
F = S C diag(ε) Cᵀ S (exactly the last Fock matrix PySCF diagonalised). Spin-polarised (UKS) runs store the
α channel in H / eigenvalues / occupations and the β channel in extras (H_beta, eigenvalues_beta, ...);
n_electrons stays the total N_α + N_β.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from ase import Atoms

from fastqmd.errors import InputError
from fastqmd.reference.base import BasisSpec, EnergyForces, Sample, SCFError, valence_by_element
from fastqmd.units import HA_PER_BOHR_TO_EV_PER_ANG, HARTREE_EV, KB_EV

_P_PYSCF_TO_FASTQMD = (1, 2, 0)  # fastqmd (y, z, x) taken from PySCF (x, y, z)


def pyscf_to_fastqmd_perm(mol) -> np.ndarray:
    """Index array `p` with fastqmd_matrix = native[np.ix_(p, p)] for a PySCF `Mole`/`Cell` (spherical AOs).

    Only p shells change: native (x, y, z) -> fastqmd (y, z, x); l = 0 and l ≥ 2 keep PySCF's order.
    """
    if mol.cart:
        raise ValueError("fastqmd needs spherical (cart=False) PySCF basis functions")
    perm = []
    i = 0
    for ib in range(mol.nbas):
        l = mol.bas_angular(ib)
        for _ in range(mol.bas_nctr(ib)):
            n = 2 * l + 1
            local = _P_PYSCF_TO_FASTQMD if l == 1 else tuple(range(n))
            perm.extend(i + j for j in local)
            i += n
    assert i == mol.nao_nr()
    return np.asarray(perm, dtype=np.int64)


def pyscf_basis_spec(mol) -> BasisSpec:
    """Per-element shell angular momenta in stored order (contracted functions of one PySCF shell are split)."""
    shells: dict[str, tuple[int, ...]] = {}
    for ia in range(mol.natm):
        sym = mol.atom_pure_symbol(ia)
        ls = []
        for ib in mol.atom_shell_ids(ia):
            ls.extend([int(mol.bas_angular(ib))] * int(mol.bas_nctr(ib)))
        if sym in shells and shells[sym] != tuple(ls):
            raise InputError(f"element {sym} has different basis shells on different atoms")
        shells[sym] = tuple(ls)
    return BasisSpec(shells)


def fock_from_eigenpairs(S: np.ndarray, C: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """F = S C diag(ε) C^† S: the matrix with generalized eigenpairs (ε, C) for C square with C^† S C = 1."""
    SC = S @ C  # [nao, nmo]
    F = (SC * eps) @ SC.conj().T
    return 0.5 * (F + F.conj().T)


def pyscf_versions() -> dict[str, str]:
    import pyscf

    return {"pyscf": pyscf.__version__, "numpy": np.__version__}


def fermi_level_midgap(eps: np.ndarray, occ: np.ndarray, max_occ: float = 2.0) -> tuple[float, float, float]:
    """(HOMO, LUMO, midgap) in the units of `eps`: HOMO is the highest level filled more than half (occ >
    max_occ/2), LUMO the lowest filled at most half. Any array shape (k-points, spins) is flattened."""
    e = np.ravel(eps)
    o = np.ravel(occ)
    tol = 0.5 * max_occ
    homo = float(e[o > tol].max())
    empty = e[o <= tol]
    lumo = float(empty.min()) if empty.size else float("nan")
    mid = 0.5 * (homo + lumo) if empty.size else homo
    return homo, lumo, mid


def fermi_dirac_mu(eps: np.ndarray, f: np.ndarray, kT: float) -> float:
    """Chemical potential μ from Fermi-Dirac fillings f = 1/(e^{(ε-μ)/kT}+1): μ = ε_i - kT ln(1/f_i - 1).

    Uses the orbital whose filling is closest to 1/2 (best conditioned). Units of `eps` and `kT` must agree.
    """
    e, f = np.ravel(eps), np.ravel(f)
    i = int(np.argmin(np.abs(f - 0.5)))
    fi = float(np.clip(f[i], 1e-300, 1 - 1e-16))
    return float(e[i] - kT * np.log(1.0 / fi - 1.0))


def fermi_level(eps: np.ndarray, occ: np.ndarray, max_occ: float, kT: float) -> tuple[float, float, float]:
    """(HOMO, LUMO, Fermi level) in the units of `eps` and `kT`.

    The Fermi level is μ of the Fermi-Dirac fillings f = occ/max_occ when some are fractional (1e-6 < f < 1-1e-6,
    see `fermi_dirac_mu`), otherwise midgap (HOMO+LUMO)/2 (integer fillings determine no μ).
    """
    homo, lumo, mid = fermi_level_midgap(eps, occ, max_occ)
    f = np.ravel(occ) / max_occ
    fractional = bool(np.any((f > 1e-6) & (f < 1 - 1e-6)))
    return homo, lumo, fermi_dirac_mu(eps, f, kT) if fractional and kT > 0 else mid


class PySCFMolEngine:
    """Molecular RKS (UKS if spin ≠ 0) with PySCF. Cheap to construct; all work happens in `compute`."""

    name = "pyscf-mol"

    def __init__(
        self,
        xc: str = "PBE",
        basis: str = "def2-SVP",
        charge: int = 0,
        spin: int = 0,
        conv_tol: float = 1e-10,
        grid_level: int = 3,
        smearing_K: float = 0.0,
        max_cycle: int = 100,
    ):
        self.xc, self.basis, self.charge, self.spin = xc, basis, int(charge), int(spin)
        self.conv_tol, self.grid_level, self.smearing_K = float(conv_tol), int(grid_level), float(smearing_K)
        self.max_cycle = int(max_cycle)

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "xc": self.xc,
            "basis": self.basis,
            "charge": self.charge,
            "spin": self.spin,
            "conv_tol": self.conv_tol,
            "grid_level": self.grid_level,
            "smearing_K": self.smearing_K,
            "spherical_aos": True,
            "grid_response_forces": True,
        }

    def check(self, atoms: Atoms) -> None:
        from pyscf import gto

        if any(atoms.pbc):
            raise InputError("engine pyscf-mol treats molecules only; use pyscf-pbc for periodic structures")
        for sym in sorted(set(atoms.get_chemical_symbols())):
            try:
                with warnings.catch_warnings():  # PySCF suggests basis-set-exchange on a miss
                    warnings.simplefilter("ignore")
                    b = gto.basis.load(self.basis, sym)
            except Exception as exc:  # PySCF raises KeyError/BasisNotFoundError/RuntimeError
                raise InputError(f"element {sym} is not in basis set {self.basis!r} ({type(exc).__name__})") from None
            if not b:
                raise InputError(f"element {sym} is not in basis set {self.basis!r}")

    def build_mol(self, atoms: Atoms):
        from pyscf import gto

        return gto.M(
            atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
            basis=self.basis,
            charge=self.charge,
            spin=self.spin,
            unit="Angstrom",
            cart=False,
            verbose=0,
        )

    def build_scf(self, mol):
        from pyscf import dft

        mf = dft.RKS(mol) if self.spin == 0 else dft.UKS(mol)
        mf.xc = self.xc
        mf.grids.level = self.grid_level
        mf.conv_tol = self.conv_tol
        mf.max_cycle = self.max_cycle
        mf.verbose = 0
        if self.smearing_K > 0:
            from pyscf.scf.addons import smearing_

            mf = smearing_(mf, sigma=self.smearing_K * KB_EV / HARTREE_EV, method="fermi")
        return mf

    def _scf(self, atoms: Atoms):
        """(mol, converged mean field); SCFError otherwise."""
        mol = self.build_mol(atoms)
        mf = self.build_scf(mol)
        mf.kernel()
        if not mf.converged:
            raise SCFError(f"PySCF {self.xc}/{self.basis} SCF not converged in {self.max_cycle} cycles")
        return mol, mf

    @staticmethod
    def _forces(mf) -> np.ndarray:
        """F = −∂E/∂R (eV/Å) with the grid-response term (forces of the grid-integrated E). [N, 3]"""
        grad = mf.nuc_grad_method()
        grad.grid_response = True
        return -grad.kernel() * HA_PER_BOHR_TO_EV_PER_ANG

    def _energy(self, mf) -> float:
        """The force-consistent energy (eV): the Mermin free energy when smeared."""
        return float(mf.e_free if self.smearing_K > 0 else mf.e_tot) * HARTREE_EV

    def compute(self, atoms: Atoms) -> Sample:
        self.check(atoms)
        t0 = time.perf_counter()
        mol, mf = self._scf(atoms)
        t_scf = time.perf_counter() - t0
        forces = self._forces(mf)  # [N, 3]
        t_forces = time.perf_counter() - t0 - t_scf
        sample = self._sample(atoms, mol, mf, forces)
        sample.extras["timing_s"] = {"scf": t_scf, "forces": t_forces}
        sample.wall_time_s = time.perf_counter() - t0
        return sample

    def energy_forces(self, atoms: Atoms) -> EnergyForces:
        _, mf = self._scf(atoms)
        eps, occ = np.asarray(mf.mo_energy), np.asarray(mf.mo_occ)
        max_occ = 2.0 if eps.ndim == 1 else 1.0
        _, _, fermi = fermi_level(eps * HARTREE_EV, occ, max_occ, self.smearing_K * KB_EV)
        alpha = eps if eps.ndim == 1 else eps[0]  # the α channel, as in the Sample
        return EnergyForces(self._energy(mf), self._forces(mf), alpha[None] * HARTREE_EV, fermi)

    def _sample(self, atoms: Atoms, mol, mf, forces: np.ndarray) -> Sample:
        p = pyscf_to_fastqmd_perm(mol)
        S = mol.intor_symmetric("int1e_ovlp")[np.ix_(p, p)]
        eps = np.asarray(mf.mo_energy)
        C = np.asarray(mf.mo_coeff)
        occ = np.asarray(mf.mo_occ)
        spin_channels = [(eps, C, occ)] if eps.ndim == 1 else [(eps[s], C[s], occ[s]) for s in range(2)]
        Hs = [fock_from_eigenpairs(S, c[p], e) * HARTREE_EV for e, c, _ in spin_channels]
        smeared = self.smearing_K > 0
        max_occ = 2.0 if len(spin_channels) == 1 else 1.0
        kT = self.smearing_K * KB_EV  # eV
        homo, lumo, fermi = fermi_level(eps * HARTREE_EV, occ, max_occ, kT)
        extras: dict[str, Any] = {"homo_eV": homo, "lumo_eV": lumo, "energy_internal_eV": mf.e_tot * HARTREE_EV}
        extras["valence_electrons"] = valence_by_element(atoms.get_chemical_symbols(), mol.atom_charges())
        if smeared:
            extras["energy_zero_kT_eV"] = mf.e_zero * HARTREE_EV
        if len(spin_channels) == 2:
            extras.update(
                H_beta=Hs[1][None],
                eigenvalues_beta=spin_channels[1][0][None] * HARTREE_EV,
                occupations_beta=spin_channels[1][2][None],
            )
        return Sample(
            numbers=atoms.numbers.copy(),
            positions=atoms.positions.copy(),
            cell=np.zeros((3, 3)),
            pbc=np.zeros(3, dtype=bool),
            energy=self._energy(mf),
            forces=forces,
            basis=pyscf_basis_spec(mol),
            kpoints=np.zeros((1, 3)),
            kweights=np.ones(1),
            H=Hs[0][None],
            S=S[None],
            eigenvalues=spin_channels[0][0][None] * HARTREE_EV,
            occupations=spin_channels[0][2][None].astype(np.float64),
            n_electrons=float(mol.nelectron),
            fermi_level=fermi,
            electronic_temperature_K=self.smearing_K,
            engine=self.name,
            settings=self.settings,
            versions=pyscf_versions(),
            wall_time_s=0.0,
            extras=extras,
        )


