"""Integrators: `init(state) -> state`, `step(state, potential) -> state`, `conserved(state) -> eV`.

Each integrator is a frozen dataclass of its parameters (time step in fs, temperature in K, ...) whose
methods are plain functions of an explicit `MDState`; one potential evaluation per step. Every integrator
reports a conserved quantity (what energy-conservation tests check):
- `VelocityVerlet`     NVE,  H = E_kin + E_pot.
- `NoseHooverVerlet`   NVT as written in the NNH-MD study (position Verlet with friction ξ from η),
                       H = E_kin + E_pot + ½ Q ξ² + g k_B T₀ η.
- `LangevinBAOAB`      NVT (Leimkuhler–Matthews), H = E_kin + E_pot − (heat put in by the O step).
- `Berendsen`          weak coupling (MOR study's reference runs), H = E_kin + E_pot − (heat put in by scaling).
Pinned atoms (`state.fixed`) have zero acceleration and velocity and never move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastqmd.md.state import ACC, MDState, acceleration, kinetic_energy, temperature
from fastqmd.potential import Potential
from fastqmd.units import KB_EV


def _evaluate(state: MDState, positions: torch.Tensor, potential: Potential):
    system = state.system.with_positions(positions)
    return system, potential.compute(system)


def _pin(new: torch.Tensor, old: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Keep pinned rows of `old` exactly."""
    return torch.where(fixed[:, None], old, new)


def _advance(state: MDState, positions, velocities, potential: Potential, dt: float, **aux) -> MDState:
    """Evaluate forces at `positions`, bump step and time; returns the new state (velocities as given)."""
    system, res = _evaluate(state, positions, potential)
    new_aux = dict(state.aux)
    new_aux.update(aux)
    return state.replace(
        system=system,
        velocities=velocities,
        forces=res.forces,
        energy=res.energy,
        extras=res.per_frame(),
        step=state.step + 1,
        time_fs=state.time_fs + dt,
        aux=new_aux,
    )


def _kick(v: torch.Tensor, state: MDState, forces: torch.Tensor, h: float) -> torch.Tensor:
    """v ← v + h · F/m  (h in fs)."""
    return v + h * acceleration(forces, state.masses, state.fixed)


@dataclass(frozen=True)
class VelocityVerlet:
    """v(t+½Δt) = v(t) + ½Δt F(t)/m;  R(t+Δt) = R(t) + Δt v(t+½Δt);  v(t+Δt) = v(t+½Δt) + ½Δt F(t+Δt)/m."""

    timestep_fs: float

    def init(self, state: MDState) -> MDState:
        return state

    def step(self, state: MDState, potential: Potential) -> MDState:
        dt = self.timestep_fs
        v_half = _kick(state.velocities, state, state.forces, 0.5 * dt)
        r_new = _pin(state.positions + dt * v_half, state.positions, state.fixed)
        new = _advance(state, r_new, v_half, potential, dt)
        return new.replace(velocities=_kick(v_half, new, new.forces, 0.5 * dt))

    def conserved(self, state: MDState) -> float:
        return float(kinetic_energy(state.velocities, state.masses) + state.energy)


def thermostat_mass(temperature_K: float, dof: int, tau_fs: float) -> float:
    """Q = g k_B T₀ τ² (eV·fs²): the thermostat period is ≈ 2π τ / √2 for small deviations."""
    return dof * KB_EV * temperature_K * tau_fs**2


@dataclass(frozen=True)
class NoseHooverVerlet:
    """The NNH-MD study's Nosé–Hoover Verlet scheme (science/nnh.md), a = F/m:

        R(t+Δt) = [2R(t) − α R(t−Δt) + a(t) Δt²] · β,   α = 1 − ½ ξ(t) Δt,   β = 1/(1 + ½ ξ(t) Δt)
        ξ(t)    = [3η(t) − 4η(t−Δt) + η(t−2Δt)] / (2Δt)
        η(t+Δt) = 2η(t) − η(t−Δt) + (2/Q) [K(t) − K₀] Δt²,   K₀ = ½ g k_B T₀,
        v(t)    = [R(t+Δt) − R(t−Δt)] / (2Δt)   (central difference, used for K(t) and reported).

    Start: η(0) = η(−Δt) = η(−2Δt) = 0 and R(−Δt) = R(0) − v(0)Δt + ½a(0)Δt², which makes the central
    difference at t = 0 return v(0) exactly. Conserved: H = K + U + ½ Q ξ² + 2K₀ η (Nosé–Hoover energy).
    aux: "r_prev" R(t−Δt), "eta" (η(t), η(t−Δt), η(t−2Δt)) as 0-d tensors, "r_next" the predicted R(t+Δt)
    (needed for v(t), reused by the next step); Q from `tau_fs`.
    """

    timestep_fs: float
    temperature_K: float
    tau_fs: float = 100.0

    def _Q(self, state: MDState) -> float:
        return thermostat_mass(self.temperature_K, state.dof, self.tau_fs)

    def _xi(self, eta: tuple) -> torch.Tensor:
        return (3 * eta[0] - 4 * eta[1] + eta[2]) / (2 * self.timestep_fs)

    def _next_positions(self, state: MDState) -> torch.Tensor:
        """R(t+Δt) from the study's formula (pinned atoms stay)."""
        dt = self.timestep_fs
        xi = self._xi(state.aux["eta"])
        alpha, beta = 1 - 0.5 * xi * dt, 1 / (1 + 0.5 * xi * dt)
        a = acceleration(state.forces, state.masses, state.fixed)
        r_next = (2 * state.positions - alpha * state.aux["r_prev"] + a * dt**2) * beta
        return _pin(r_next, state.positions, state.fixed)

    def _central_velocity(self, state: MDState, r_next: torch.Tensor) -> torch.Tensor:
        v = (r_next - state.aux["r_prev"]) / (2 * self.timestep_fs)
        return torch.where(state.fixed[:, None], torch.zeros_like(v), v)

    def init(self, state: MDState) -> MDState:
        dt = self.timestep_fs
        a = acceleration(state.forces, state.masses, state.fixed)
        zero = state.energy.new_zeros(())
        r_prev = _pin(state.positions - state.velocities * dt + 0.5 * a * dt**2, state.positions, state.fixed)
        aux = dict(state.aux, r_prev=r_prev, eta=(zero, zero, zero))
        return self._with_central_velocity(state.replace(aux=aux))

    def _with_central_velocity(self, state: MDState) -> MDState:
        """Predict R(t+Δt) (kept in aux "r_next" for the next step) and set v(t) by central difference."""
        r_next = self._next_positions(state)
        return state.replace(velocities=self._central_velocity(state, r_next), aux=dict(state.aux, r_next=r_next))

    def step(self, state: MDState, potential: Potential) -> MDState:
        dt = self.timestep_fs
        eta = state.aux["eta"]
        r_next = state.aux["r_next"]  # = self._next_positions(state), computed when the state was made
        k = kinetic_energy(state.velocities, state.masses)  # K(t), velocities are central v(t)
        k0 = 0.5 * state.dof * KB_EV * self.temperature_K
        eta_next = 2 * eta[0] - eta[1] + (2 / self._Q(state)) * (k - k0) * dt**2
        new = _advance(state, r_next, state.velocities, potential, dt,
                       r_prev=state.positions, eta=(eta_next, eta[0], eta[1]))
        return self._with_central_velocity(new)

    def conserved(self, state: MDState) -> float:
        eta = state.aux["eta"]
        xi = self._xi(eta)
        k0 = 0.5 * state.dof * KB_EV * self.temperature_K
        k = kinetic_energy(state.velocities, state.masses)
        return float(k + state.energy + 0.5 * self._Q(state) * xi**2 + 2 * k0 * eta[0])


@dataclass(frozen=True)
class LangevinBAOAB:
    """BAOAB splitting (Leimkuhler & Matthews 2013): B half kick, A half drift, O exact Ornstein–Uhlenbeck
    v ← c₁ v + √((1−c₁²) k_B T/m) ξ with c₁ = exp(−γΔt), A half drift, B half kick.

    The noise of step n comes from a generator seeded with (seed, n), so a restarted run draws the same
    numbers as an uninterrupted one without storing generator state. aux "heat": Σ ΔE_kin of O steps (eV).
    """

    timestep_fs: float
    temperature_K: float
    friction_per_fs: float = 0.01
    seed: int = 0

    def init(self, state: MDState) -> MDState:
        return state.replace(aux=dict(state.aux, heat=state.aux.get("heat", 0.0)))

    def _noise(self, state: MDState) -> torch.Tensor:
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + state.step)
        z = torch.randn(state.velocities.shape, generator=gen, dtype=state.velocities.dtype)
        return z.to(state.velocities.device)

    def step(self, state: MDState, potential: Potential) -> MDState:
        dt, fixed = self.timestep_fs, state.fixed
        v = _kick(state.velocities, state, state.forces, 0.5 * dt)
        r = _pin(state.positions + 0.5 * dt * v, state.positions, fixed)
        c1 = math.exp(-self.friction_per_fs * dt)
        sigma = torch.sqrt((1 - c1**2) * KB_EV * self.temperature_K * ACC / state.masses)[:, None]
        k_before = kinetic_energy(v, state.masses)
        v = torch.where(fixed[:, None], v, c1 * v + sigma * self._noise(state))
        heat = state.aux["heat"] + float(kinetic_energy(v, state.masses) - k_before)
        r = _pin(r + 0.5 * dt * v, state.positions, fixed)
        new = _advance(state, r, v, potential, dt, heat=heat)
        return new.replace(velocities=_kick(v, new, new.forces, 0.5 * dt))

    def conserved(self, state: MDState) -> float:
        return float(kinetic_energy(state.velocities, state.masses) + state.energy) - state.aux["heat"]


@dataclass(frozen=True)
class Berendsen:
    """Velocity Verlet followed by the weak-coupling scaling v ← λ v,
    λ = √(1 + (Δt/τ)(T₀/T − 1)) (Berendsen et al. 1984; MGmol, as used by the MOR study, τ = 800 a.u.).
    aux "heat": Σ ΔE_kin of the scalings (eV)."""

    timestep_fs: float
    temperature_K: float
    tau_fs: float = 19.35  # 800 a.u. of time

    def init(self, state: MDState) -> MDState:
        return state.replace(aux=dict(state.aux, heat=state.aux.get("heat", 0.0)))

    def step(self, state: MDState, potential: Potential) -> MDState:
        new = VelocityVerlet(self.timestep_fs).step(state, potential)
        t = temperature(new.velocities, new.masses, new.dof)
        lam = torch.sqrt(1 + (self.timestep_fs / self.tau_fs) * (self.temperature_K / t.clamp_min(1e-12) - 1))
        v = new.velocities * lam
        heat = new.aux["heat"] + float(kinetic_energy(v, new.masses) - kinetic_energy(new.velocities, new.masses))
        return new.replace(velocities=v, aux=dict(new.aux, heat=heat))

    def conserved(self, state: MDState) -> float:
        return float(kinetic_energy(state.velocities, state.masses) + state.energy) - state.aux["heat"]
