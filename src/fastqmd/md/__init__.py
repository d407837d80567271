"""Molecular dynamics: plain integrator functions over an explicit `MDState`, and a restartable runner.

In:  a `fastqmd.potential.Potential` (any energy model, or any ASE Calculator through the adapter), an
     initial ASE `Atoms`, an ensemble (NVE velocity Verlet, the NNH-MD study's Nosé–Hoover Verlet, Langevin
     BAOAB, Berendsen), temperature in K and time step in fs.
Out: an extxyz trajectory (positions Å, velocities Å/fs, energy eV, forces eV/Å, per-frame extras such as
     eigenvalues), a thermo log (step, time fs, T K, E_kin, E_pot, conserved quantity in eV) and checkpoints
     from which a killed run resumes bit for bit.
Units inside and out: eV, Å, fs, amu; accelerations F/m are converted once with `ACC` (state.py).
"""
