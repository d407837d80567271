"""NN Hamiltonian (NNH-MD, issue 4): an E(3)-equivariant network that predicts real-space Kohn–Sham / tight-binding
Hamiltonian blocks (on a fitted two-centre baseline), an exact overlap (PySCF integrals, tabulated tblite
two-centre S, or a learned two-centre head), and a learned repulsive energy.

In:  a structure — element symbols, positions [N, 3] Å, cell [3, 3] Å (rows), pbc — as a `Graph` of integer
     indices (`model.graph(...)`, vesin neighbour list) plus torch positions/cell that carry gradients.
Out: `Blocks` in eV (S dimensionless) in the fastqmd orbital convention (`fastqmd.orbitals`, docs/CONVENTIONS.md;
     atom blocks contiguous in Atoms order, shells in `BasisSpec` order, m = −l..l), assembled into
     H(R) [n_shifts, nao, nao] (`to_real_space`, H(−R) = H(R)ᵀ) or H(k) [nk, nao, nao] (`to_kspace`,
     H(k) = Σ_R e^{i2πk·R} H(R), k fractional); E_rep in eV.
Guarantees (tests/nnh): rotating + translating the input rotates every block by `orbital_rotation` (1e-10 in
float64), permuting atoms permutes blocks, H(k) Hermitian, Bloch-consistent under lattice translations and
supercells, gradients reach positions and cell. The H model, S head and E_rep must be built for the same
element set (species indices are sorted symbols). Energy Ω[H(k), S(k)] + E_rep: `fastqmd.nnh.energy` on the math
of `fastqmd.electronic`; the three S sources share one seam, `fastqmd.nnh.overlap.OverlapProvider`.
"""

import importlib

# Lazy re-exports (PEP 562): importing fastqmd.nnh (e.g. for its CLI commands) must not import torch/e3nn.
_EXPORTS = {
    "Blocks": "blocks",
    "BlockLayout": "blocks",
    "to_kspace": "blocks",
    "to_real_space": "blocks",
    "Graph": "graph",
    "GraphCache": "graph",
    "build_graph": "graph",
    "edge_vectors": "graph",
    "NNHConfig": "model",
    "NNHModel": "model",
    "OverlapConfig": "overlap",
    "OverlapProvider": "overlap",
    "TwoCentreOverlap": "overlap",
    "check_positive_definite": "overlap",
    "Repulsion": "repulsion",
    "RepulsionConfig": "repulsion",
    "RepulsionNetworkConfig": "repulsion",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fastqmd.nnh.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fastqmd.nnh' has no attribute {name!r}")


__all__ = [
    "BlockLayout",
    "Blocks",
    "Graph",
    "GraphCache",
    "NNHConfig",
    "NNHModel",
    "OverlapConfig",
    "OverlapProvider",
    "Repulsion",
    "RepulsionConfig",
    "RepulsionNetworkConfig",
    "TwoCentreOverlap",
    "build_graph",
    "check_positive_definite",
    "edge_vectors",
    "to_kspace",
    "to_real_space",
]
