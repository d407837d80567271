"""The Kohn–Sham energy functional evaluated at the density matrix of the learned H (`energy_mode: ks`).

In:  the model's density matrix P [nao, nao] (fastqmd orbital order, total density: Tr[P S] = N_e; torch float64,
     differentiable) and positions [N, 3] Å (torch float64, may require grad), for one molecule.
Out: E_KS[P](R) eV, a 0-d tensor; dE/dP = F[P] (the Fock matrix of P, eV) and ∂E/∂R|_P (eV/Å) in its backward.

    E_KS[P] = Tr[P h] + ½ Tr[P J[P]] + E_xc[ρ_P] + E_nn,     h = T + V_nuc,  ρ_P(r) = Σ_μν P_μν μ(r) ν(r)

evaluated by PySCF with the reference engine's functional, basis and grid (`fastqmd.reference.pyscf_mol`), so that
at the SCF density matrix E_KS equals the reference energy. Why: Ω[H] + E_rep needs E_rep to carry the
double-counting energy E_DFT − Ω[H_KS], whose forces are ~15 eV/Å RMS on thermal water (study c, the LS fit
log), so an accurate H gives poor forces. E_KS is stationary at the SCF density on the manifold of idempotent
P (PSP = 2P), and P(H_θ, S) from the eigenvectors of any H lies on it: an error δP of the learned density enters
the energy at second order and the forces as δP·∂δP/∂R, with no repulsive term and no fitted constant.

Forces E(R) = E_KS[P(H_θ(R), S(R)), R]: dE/dR = ∂E_KS/∂R|_P + Tr[F[P] dP/dR]. The first term is PySCF's
analytic gradient at fixed P (`grad_elec` with zero energy-weighted density: core-Hamiltonian, Coulomb and XC
derivative integrals, XC grid response) + the nuclear repulsion gradient; the second is autograd through the
differentiable density matrix of `fastqmd.electronic.free_energy.density_matrices` (Daleckii–Krein), H_θ and the
exact S(R). Molecules, unsmeared (kT = 0), closed shell only. First derivatives only: a force loss (which
differentiates forces by the weights) would need ∂F[P]/∂P and is refused by the trainer.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fastqmd.config import FrozenModel
from fastqmd.nnh.exact_overlap import cached_operator, placeholder_molecule
from fastqmd.units import BOHR_ANG, HARTREE_EV


class KSFunctional(FrozenModel):
    """The reference's KS functional (a PySCF molecular RKS): what `energy_mode: ks` evaluates."""

    kind: Literal["pyscf-rks"] = "pyscf-rks"
    xc: str
    pyscf_basis: str
    grid_level: int = 3
    charge: int = 0


class PySCFKS:
    """E_KS[P](R), F[P] and ∂E/∂R|_P for one molecule's elements (PySCF RKS at the model's geometry)."""

    def __init__(self, symbols: list[str], spec: KSFunctional):
        from fastqmd.reference.pyscf_mol import PySCFMolEngine, pyscf_to_fastqmd_perm

        self.spec = spec
        self.engine = PySCFMolEngine(xc=spec.xc, basis=spec.pyscf_basis, charge=spec.charge,
                                     grid_level=spec.grid_level)  # the reference's own mean-field set-up
        self.mol = placeholder_molecule(list(symbols), spec.pyscf_basis, charge=spec.charge)
        self.perm = pyscf_to_fastqmd_perm(self.mol)

    def _mf(self, positions_A: np.ndarray):
        self.mol.set_geom_(positions_A, unit="Angstrom")
        return self.engine.build_scf(self.mol)

    def evaluate(self, P_fq: np.ndarray, positions_A: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(E eV, F[P] [nao, nao] eV in fastqmd order, ∂E/∂R|_P [N, 3] eV/Å) at P (fastqmd order)."""
        p = self.perm
        P = np.zeros_like(P_fq)
        P[np.ix_(p, p)] = 0.5 * (P_fq + P_fq.T)
        mf = self._mf(positions_A)
        h = mf.get_hcore()
        vhf = mf.get_veff(self.mol, P)
        E = float(mf.energy_tot(P, h, vhf))
        F = (h + np.asarray(vhf))[np.ix_(p, p)]
        # ∂E/∂R at fixed P: PySCF's gradient with P as C n Cᵀ (natural orbitals) and no energy-weighted term
        n, C = np.linalg.eigh(P)
        g = mf.nuc_grad_method()
        g.grid_response = True
        dE = g.grad_elec(np.zeros_like(n), C, n) + g.grad_nuc()
        return E * HARTREE_EV, F * HARTREE_EV, dE * (HARTREE_EV / BOHR_ANG)

    def __call__(self, P: Tensor, positions: Tensor) -> Tensor:
        return _KSEnergy.apply(P, positions, self)


class _KSEnergy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, P: Tensor, positions: Tensor, op: PySCFKS) -> Tensor:
        E, F, dE = op.evaluate(P.detach().cpu().numpy().astype(np.float64),
                               positions.detach().cpu().numpy().astype(np.float64))
        ctx.save_for_backward(torch.as_tensor(F, dtype=P.dtype, device=P.device),
                              torch.as_tensor(dE, dtype=positions.dtype, device=positions.device))
        return torch.tensor(E, dtype=torch.float64, device=P.device)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        F, dE = ctx.saved_tensors
        return g * F, g * dE, None


class PySCFKSProvider:
    """E_KS(frame symbols, P, positions) with one cached `PySCFKS` per element list."""

    def __init__(self, spec: KSFunctional, max_cached: int = 8):
        self.spec, self.max_cached = spec, max_cached
        self._cache: dict[tuple[str, ...], PySCFKS] = {}

    def __call__(self, symbols, P: Tensor, positions: Tensor) -> Tensor:
        key = tuple(symbols)
        op = cached_operator(self._cache, key, lambda: PySCFKS(list(key), self.spec), self.max_cached)
        return op(P.to(torch.float64), positions.to(torch.float64))


def with_ks_energy(model, spec: KSFunctional):
    """A copy of an `EnergyModel` with the same H (and S, baseline) whose energy is E_KS[P(H, S)] of `spec`
    (no E_rep, no reference energies): any H model trained on molecular PySCF data, re-read as `energy_mode: ks`."""
    from fastqmd.nnh.energy import EnergyModel

    cfg = model.config.model_copy(update={"energy_mode": "ks", "ks_functional": spec, "reference_energies": {}})
    new = EnergyModel(type(model.config).model_validate(cfg.model_dump()))
    new.load_state_dict(model.state_dict())
    return new.to(model.dtype)
