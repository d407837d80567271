"""The explicit MD state and the small kinematic functions every integrator shares.

Units: positions Å, velocities Å/fs, forces eV/Å, masses amu, energies eV, time fs.
With these units a = F/m comes out in eV/(Å·amu); multiply by `ACC` = (1 fs in ASE time)² to get Å/fs²,
and E_kin = ½ Σ m v² / ACC in eV.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase import units as ase_units

from fastqmd.potential import DTYPE, Potential, System, system_from_atoms
from fastqmd.units import KB_EV

ACC: float = ase_units.fs**2  # eV/(Å·amu) → Å/fs²


@dataclass(frozen=True)
class MDState:
    """Everything needed to continue a trajectory. `aux` holds integrator variables (tensors or floats),
    e.g. the Nosé–Hoover η history and R(t−Δt), or the heat a thermostat has exchanged."""

    system: System
    velocities: torch.Tensor  # [N, 3] Å/fs
    forces: torch.Tensor  # [N, 3] eV/Å
    energy: torch.Tensor  # 0-d, eV (potential energy)
    masses: torch.Tensor  # [N] amu
    fixed: torch.Tensor  # [N] bool, pinned atoms
    dof: int  # kinetic degrees of freedom used for T
    step: int = 0
    time_fs: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)  # per-frame potential extras (eigenvalues, ...)
    aux: dict[str, Any] = field(default_factory=dict)

    @property
    def positions(self) -> torch.Tensor:
        return self.system.positions

    def replace(self, **kw) -> "MDState":
        return dataclasses.replace(self, **kw)


def _pack(obj: Any) -> Any:
    """Plain containers of tensors and Python scalars only (torch.load weights_only=True); numpy arrays are
    wrapped as {"__ndarray__": tensor} so that they come back as numpy."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(obj.copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _pack(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return type(obj)(_pack(v) for v in obj)
    return obj


def _unpack(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: _unpack(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return type(obj)(_unpack(v) for v in obj)
    return obj


def state_to_dict(state: MDState) -> dict[str, Any]:
    """MDState → nested dict of tensors/scalars (a weights_only-loadable checkpoint payload)."""
    s = state.system
    d = {f.name: getattr(state, f.name) for f in dataclasses.fields(state) if f.name != "system"}
    d["system"] = {"positions": s.positions, "cell": s.cell, "pbc": s.pbc, "numbers": s.numbers}
    return _pack(d)


def state_from_dict(d: dict[str, Any]) -> MDState:
    """Inverse of `state_to_dict`."""
    d = _unpack(dict(d))
    return MDState(system=System(**d.pop("system")), **d)


def degrees_of_freedom(n_atoms: int, n_fixed: int, momentum_conserved: bool) -> int:
    """g = 3 N_free − 3 when total momentum is conserved (and zeroed), else 3 N_free."""
    g = 3 * (n_atoms - n_fixed) - (3 if momentum_conserved and n_fixed == 0 else 0)
    return max(g, 1)


def kinetic_energy(velocities: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """E_kin = ½ Σ_i m_i |v_i|² / ACC  (eV)."""
    return 0.5 * (masses[:, None] * velocities**2).sum() / ACC


def temperature(velocities: torch.Tensor, masses: torch.Tensor, dof: int) -> torch.Tensor:
    """T = 2 E_kin / (g k_B)  (K)."""
    return 2.0 * kinetic_energy(velocities, masses) / (dof * KB_EV)


def acceleration(forces: torch.Tensor, masses: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """a = F/m · ACC in Å/fs², zero for pinned atoms.  [N, 3]"""
    a = forces / masses[:, None] * ACC
    return torch.where(fixed[:, None], torch.zeros_like(a), a)


def total_momentum(velocities: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """P = Σ m v  (amu·Å/fs).  [3]"""
    return (masses[:, None] * velocities).sum(0)


def remove_com_velocity(velocities: torch.Tensor, masses: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Subtract the mass-weighted mean velocity of the free atoms, so Σ_free m v = 0."""
    free = (~fixed).to(velocities.dtype)[:, None]
    m = masses[:, None] * free
    v_com = (m * velocities).sum(0) / m.sum().clamp_min(1e-300)
    return (velocities - v_com) * free


def maxwell_boltzmann(
    masses: torch.Tensor, fixed: torch.Tensor, temperature_K: float, dof: int, seed: int, remove_com: bool = True
) -> torch.Tensor:
    """Velocities drawn from exp(−m v²/2kT) (σ_i = √(kT·ACC/m_i) in Å/fs), total momentum of the free atoms
    set to zero (if `remove_com`), pinned atoms at rest, then rescaled so that T = temperature_K exactly."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    z = torch.randn((masses.shape[0], 3), generator=gen, dtype=DTYPE).to(masses.device)
    v = z * torch.sqrt(KB_EV * temperature_K * ACC / masses)[:, None]
    v = torch.where(fixed[:, None], torch.zeros_like(v), v)
    if remove_com:
        v = remove_com_velocity(v, masses, fixed)
    t_now = temperature(v, masses, dof)
    if temperature_K > 0 and t_now > 0:
        v = v * torch.sqrt(temperature_K / t_now)
    return v


def init_state(
    atoms: Atoms,
    potential: Potential,
    velocities: torch.Tensor,
    masses: torch.Tensor,
    fixed: torch.Tensor,
    dof: int,
    device: str | torch.device = "cpu",
) -> MDState:
    """Initial state: evaluate the potential once at the starting positions."""
    system = system_from_atoms(atoms, device)
    res = potential.compute(system)
    return MDState(
        system=system,
        velocities=velocities.to(device=device, dtype=DTYPE),
        forces=res.forces,
        energy=res.energy,
        masses=masses.to(device=device, dtype=DTYPE),
        fixed=fixed.to(device=device),
        dof=dof,
        extras=res.per_frame(),
    )


def masses_of(atoms: Atoms, overrides: dict[str, float] | None = None) -> torch.Tensor:
    """Atomic masses in amu from ASE, with optional per-element overrides (e.g. {"H": 2.014})."""
    m = np.asarray(atoms.get_masses(), dtype=np.float64).copy()
    for sym, val in (overrides or {}).items():
        m[np.asarray(atoms.get_chemical_symbols()) == sym] = val
    return torch.as_tensor(m, dtype=DTYPE)
