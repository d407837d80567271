"""PySCF periodic Kohn-Sham DFT (GTH pseudopotentials, Gaussian basis, FFTDF) as a fastqmd reference engine.

In:  a fully periodic ASE `Atoms` (Å, cell rows).
Out: a `Sample` with energy per cell (eV; Mermin free energy E - σS with Fermi-Dirac smearing), forces (eV/Å)
     where PySCF has analytic gradients, and per k-point H(k), S(k) (eV / dimensionless) in the fastqmd
     real-SH ordering, eigenvalues, occupations, Fermi level; k-points stored in fractional coordinates.

k-points: a Monkhorst-Pack mesh `kmesh` (no symmetry reduction, equal weights); (1, 1, 1) is the Γ-point
code path (real matrices, `pbc.dft.RKS`), anything else uses `pbc.dft.KRKS`. Bloch convention (PySCF's):
H(k)_μν = Σ_R e^{i 2π k·n_R} H_μν(0, R), R = n_R · cell, k fractional (docs/CONVENTIONS.md).

Forces: PySCF 2.14 has analytic nuclear gradients for Γ-point RKS only with the multigrid integrator
(`multigrid_numint`; FFTDF raises NotImplementedError) and for KRKS only with FFTDF (multigrid fails), both for
LDA/GGA with GTH pseudopotentials, smeared or not. So Γ uses RKS + multigrid and k-meshes KRKS + FFTDF
(`settings["numint"]`); checked against finite differences in tests/reference/test_ref_forces.py.
If PySCF raises NotImplementedError for a setting (e.g. meta-GGA), the sample gets `forces=None` and
extras["forces_unavailable"] states why.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from ase import Atoms

from fastqmd.errors import InputError
from fastqmd.reference.base import EnergyForces, Sample, SCFError, valence_by_element
from fastqmd.reference.pyscf_mol import (
    fermi_level,
    fock_from_eigenpairs,
    pyscf_basis_spec,
    pyscf_to_fastqmd_perm,
    pyscf_versions,
)
from fastqmd.units import HA_PER_BOHR_TO_EV_PER_ANG, HARTREE_EV, KB_EV


class PySCFPBCEngine:
    """Periodic RKS/KRKS with GTH pseudopotentials. Cheap to construct; all work happens in `compute`."""

    name = "pyscf-pbc"

    def __init__(
        self,
        xc: str = "PBE",
        basis: str = "gth-szv",
        pseudo: str = "gth-pbe",
        kmesh: tuple[int, int, int] = (1, 1, 1),
        smearing_K: float = 0.0,
        conv_tol: float = 1e-9,
        ke_cutoff_Ha: float | None = None,
        max_cycle: int = 100,
        precision: float = 1e-8,
    ):
        self.xc, self.basis, self.pseudo = xc, basis, pseudo
        self.kmesh = tuple(int(k) for k in kmesh)
        self.smearing_K, self.conv_tol, self.max_cycle = float(smearing_K), float(conv_tol), int(max_cycle)
        self.ke_cutoff_Ha = None if ke_cutoff_Ha is None else float(ke_cutoff_Ha)
        self.precision = float(precision)

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "xc": self.xc,
            "basis": self.basis,
            "pseudo": self.pseudo,
            "kmesh": list(self.kmesh),
            "smearing_K": self.smearing_K,
            "conv_tol": self.conv_tol,
            "ke_cutoff_Ha": self.ke_cutoff_Ha,
            "precision": self.precision,
            "numint": "multigrid" if self.gamma_only else "FFTDF",
            "spherical_aos": True,
        }

    @property
    def gamma_only(self) -> bool:
        return self.kmesh == (1, 1, 1)

    def check(self, atoms: Atoms) -> None:
        from pyscf.pbc import gto as pgto

        if not all(atoms.pbc):
            raise InputError("engine pyscf-pbc needs a fully periodic structure (pbc = True, True, True)")
        for sym in sorted(set(atoms.get_chemical_symbols())):
            tables = (("basis", self.basis, pgto.basis.load), ("pseudo", self.pseudo, pgto.pseudo.load))
            for what, name, loader in tables:
                try:
                    with warnings.catch_warnings():  # PySCF warns about basis-set-exchange on a miss
                        warnings.simplefilter("ignore")
                        ok = bool(loader(name, sym))
                except Exception:  # PySCF raises KeyError/RuntimeError/BasisNotFoundError
                    ok = False
                if not ok:
                    raise InputError(f"element {sym} is not in the {what} table {name!r}")

    def build_cell(self, atoms: Atoms):
        from pyscf.pbc import gto as pgto

        cell = pgto.Cell()
        cell.atom = [(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)]
        cell.a = np.asarray(atoms.cell.array)
        cell.unit = "Angstrom"
        cell.basis, cell.pseudo, cell.cart, cell.verbose = self.basis, self.pseudo, False, 0
        cell.precision = self.precision
        if self.ke_cutoff_Ha is not None:
            cell.ke_cutoff = self.ke_cutoff_Ha
        cell.build()
        return cell

    def build_scf(self, cell):
        from pyscf.pbc import dft as pdft

        if self.gamma_only:
            mf = pdft.RKS(cell)
        else:
            mf = pdft.KRKS(cell, kpts=cell.make_kpts(self.kmesh))
        mf.xc, mf.conv_tol, mf.max_cycle, mf.verbose = self.xc, self.conv_tol, self.max_cycle, 0
        if self.gamma_only:  # PySCF's Γ-point RKS gradients need the multigrid integrator
            mf = mf.multigrid_numint()
        if self.smearing_K > 0:
            from pyscf.pbc.scf.addons import smearing_

            mf = smearing_(mf, sigma=self.smearing_K * KB_EV / HARTREE_EV, method="fermi")
        return mf

    def _scf(self, atoms: Atoms):
        """(cell, converged mean field); SCFError otherwise."""
        cell = self.build_cell(atoms)
        mf = self.build_scf(cell)
        mf.kernel()
        if not mf.converged:
            raise SCFError(f"PySCF-PBC {self.xc}/{self.basis} SCF not converged in {self.max_cycle} cycles")
        return cell, mf

    @staticmethod
    def _forces(mf) -> tuple[np.ndarray | None, str | None]:
        """(F = −∂E/∂R [N, 3] eV/Å, None) or (None, why) where PySCF has no analytic gradient."""
        try:
            return -np.asarray(mf.nuc_grad_method().kernel()) * HA_PER_BOHR_TO_EV_PER_ANG, None
        except NotImplementedError as exc:
            return None, f"PySCF has no analytic gradient for this setting: {exc}"

    def _energy(self, mf) -> float:
        """Energy per cell (eV): the Mermin free energy when smeared."""
        return float(mf.e_free if self.smearing_K > 0 else mf.e_tot) * HARTREE_EV

    def _eigenvalues(self, mf) -> tuple[np.ndarray, np.ndarray]:
        """(ε [nk, nmo] Hartree, occupations [nk, nmo])."""
        if self.gamma_only:
            return np.stack([mf.mo_energy]), np.stack([mf.mo_occ]).astype(np.float64)
        return np.stack(list(mf.mo_energy)), np.stack(list(mf.mo_occ)).astype(np.float64)

    def compute(self, atoms: Atoms) -> Sample:
        self.check(atoms)
        t0 = time.perf_counter()
        cell, mf = self._scf(atoms)
        t_scf = time.perf_counter() - t0
        extras: dict[str, Any] = {}
        forces, why = self._forces(mf)
        if why is not None:
            extras["forces_unavailable"] = why
        extras["timing_s"] = {"scf": t_scf, "forces": time.perf_counter() - t0 - t_scf}
        sample = self._sample(atoms, cell, mf, forces, extras)
        sample.wall_time_s = time.perf_counter() - t0
        return sample

    def energy_forces(self, atoms: Atoms) -> EnergyForces:
        _, mf = self._scf(atoms)
        forces, why = self._forces(mf)
        eps, occ = self._eigenvalues(mf)
        _, _, fermi = fermi_level(eps * HARTREE_EV, occ, 2.0, self.smearing_K * KB_EV)
        return EnergyForces(self._energy(mf), forces, eps * HARTREE_EV, fermi, why)

    def _sample(self, atoms: Atoms, cell, mf, forces, extras: dict[str, Any]) -> Sample:
        p = pyscf_to_fastqmd_perm(cell)
        ix = np.ix_(p, p)
        if self.gamma_only:
            kpts_frac = np.zeros((1, 3))
            S_k = [np.asarray(mf.get_ovlp())]
            eps_k, C_k = [mf.mo_energy], [mf.mo_coeff]
        else:
            kpts_frac = cell.get_scaled_kpts(mf.kpts)
            S_k = list(mf.get_ovlp())
            eps_k, C_k = list(mf.mo_energy), list(mf.mo_coeff)
        nk = len(S_k)
        eps, occ = self._eigenvalues(mf)  # [nk, nmo] Hartree
        if eps.shape[1] != len(p):
            raise SCFError("PySCF removed linearly dependent basis functions; H cannot be rebuilt square")
        S = np.stack([s[ix] for s in S_k])  # [nk, nao, nao]
        H = np.stack([fock_from_eigenpairs(S[k], np.asarray(C_k[k])[p], eps_k[k]) for k in range(nk)]) * HARTREE_EV
        smeared = self.smearing_K > 0
        homo, lumo, fermi = fermi_level(eps * HARTREE_EV, occ, 2.0, self.smearing_K * KB_EV)
        extras.update(homo_eV=homo, lumo_eV=lumo, energy_internal_eV=float(mf.e_tot) * HARTREE_EV)
        extras["valence_electrons"] = valence_by_element(atoms.get_chemical_symbols(), cell.atom_charges())
        if smeared:
            extras["energy_zero_kT_eV"] = float(mf.e_zero) * HARTREE_EV
        return Sample(
            numbers=atoms.numbers.copy(),
            positions=atoms.positions.copy(),
            cell=atoms.cell.array.copy(),
            pbc=np.ones(3, dtype=bool),
            energy=self._energy(mf),
            forces=forces,
            basis=pyscf_basis_spec(cell),
            kpoints=np.asarray(kpts_frac, dtype=np.float64),
            kweights=np.full(nk, 1.0 / nk),
            H=H if not self.gamma_only else H.real,
            S=S if not self.gamma_only else S.real,
            eigenvalues=eps * HARTREE_EV,
            occupations=occ,
            n_electrons=float(cell.nelectron),
            fermi_level=fermi,
            electronic_temperature_K=self.smearing_K,
            engine=self.name,
            settings=self.settings,
            versions=pyscf_versions(),
            wall_time_s=0.0,
            extras=extras,
        )
