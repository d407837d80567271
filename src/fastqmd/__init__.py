"""fastqmd: quantum-accurate molecular dynamics at surrogate speed.

Pipeline (one folder each): structures -> reference (quantum engines) -> data (HDF5 store, Dask generation)
-> models -> md -> analysis. Public units everywhere: eV, Å, eV/Å, fs, amu (ASE conventions).
"""

__version__ = "0.1.0"
