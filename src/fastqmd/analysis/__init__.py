"""Trajectory analysis and surrogate-vs-reference comparison, in the studies' style.

In:  extxyz trajectories (fastqmd's own, or any ASE-readable file with positions, and velocities for the
     velocity-based quantities), times in fs, lengths in Å, energies in eV.
Out: plain numpy results (thermo.py T(t); msd.py MSD(t) in Å²; rdf.py g(r); adf.py bond-angle distribution
     in 1/deg; vdos.py velocity autocorrelation and its spectrum in THz and cm⁻¹; dos.py Gaussian-broadened
     electronic DOS in 1/eV; bonds.py bond lengths/angles vs time), `compare.py` agreement metrics, and
     plots.py figures: reference solid red, surrogate dashed black, one panel per quantity.
Neighbour lists come from vesin (neighbors.py).
"""
