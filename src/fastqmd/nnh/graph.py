"""The atom graph of the NN Hamiltonian: directed edges (i, j, R) within a cutoff, with integer lattice shifts.

In:  atomic symbols, positions (Å, numpy), cell (Å, rows), pbc, a cutoff (Å) and the model's species order.
Out: a `Graph` of integer index tensors only — the geometry stays with the caller, and the edge vectors are
     recomputed inside every forward from torch positions/cell so that gradients reach them:

         r_ij(R) = pos[j] − pos[i] + R·cell          (R integer row vector, cell rows = lattice vectors)

Conventions match `fastqmd.electronic.kspace`: edge (i, j, R) carries the block H_ij(R) = ⟨i, cell 0|H|j, cell R⟩.
The list is full: every edge (i, j, R) has its reverse (j, i, −R) (`reverse`). Self-image edges (i, i, R ≠ 0)
of small cells are included; the on-site term (i, i, 0) is not an edge. Edges are grouped by (species_i,
species_j) and nodes by species so that forward passes loop over species (pairs), never over atoms or edges.
Neighbour search: vesin (numpy, no gradient) — the graph is rebuilt when atoms move (each MD step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import vesin
from torch import Tensor


@dataclass(frozen=True)
class Graph:
    """Index structure of one structure's graph. All tensors are int64 on one device. Shapes in comments."""

    species: Tensor  # [N] index into the model's species order
    edge_i: Tensor  # [E]
    edge_j: Tensor  # [E]
    shifts: Tensor  # [E, 3] integer lattice shift R of atom j
    unique_shifts: Tensor  # [n_shifts, 3]; row `zero_shift` is (0, 0, 0)
    edge_shift: Tensor  # [E] index of each edge's R in unique_shifts
    zero_shift: int
    reverse: Tensor  # [E] index of the reverse edge (j, i, −R)
    orbital_offsets: Tensor  # [N + 1] start of each atom's orbital block, total last
    node_groups: tuple[Tensor, ...]  # per species s: atom indices [N_s]
    edge_groups: tuple[tuple[Tensor, ...], ...]  # [s_a][s_b]: edge indices with species (s_a, s_b)
    edge_group_pos: Tensor  # [E] position of each edge inside its species-pair group

    @property
    def n_atoms(self) -> int:
        return int(self.species.shape[0])

    @property
    def n_orbitals(self) -> int:
        return int(self.orbital_offsets[-1])

    def to(self, device: torch.device | str) -> "Graph":
        """A copy with every tensor on `device`."""

        def mv(x):
            if isinstance(x, Tensor):
                return x.to(device)
            if isinstance(x, tuple):
                return tuple(mv(y) for y in x)
            return x

        return Graph(**{k: mv(getattr(self, k)) for k in self.__dataclass_fields__})


def neighbor_pairs(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float) -> tuple[np.ndarray, ...]:
    """Full neighbour list (i, j, R) with |pos[j] − pos[i] + R·cell| < cutoff, via vesin. Returns i, j, R."""
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    box = np.ascontiguousarray(cell, dtype=np.float64) if pbc.any() else np.zeros((3, 3))
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, S = nl.compute(pos, box, pbc, quantities="ijS")
    return i.astype(np.int64), j.astype(np.int64), S.astype(np.int64)


def reverse_edges(i: np.ndarray, j: np.ndarray, S: np.ndarray) -> np.ndarray:
    """For each edge (i, j, R) the index of (j, i, −R) (vectorised by integer keys + searchsorted)."""
    if len(i) == 0:
        return np.zeros(0, dtype=np.int64)
    n = int(max(i.max(), j.max())) + 1
    m = int(np.abs(S).max()) if S.size else 0
    w = 2 * m + 1

    def key(a, b, R):
        k = a * n + b
        for c in range(3):
            k = k * w + (R[:, c] + m)
        return k

    fwd = key(i, j, S)
    order = np.argsort(fwd)
    want = key(j, i, -S)
    pos = np.searchsorted(fwd[order], want)
    if np.any(pos >= len(fwd)) or np.any(fwd[order][np.minimum(pos, len(fwd) - 1)] != want):
        raise RuntimeError("neighbour list is not symmetric: some edge has no reverse")
    return order[pos]


def build_graph(
    symbols: list[str],
    positions: np.ndarray,
    cell: np.ndarray,
    pbc,
    cutoff: float,
    species_order: list[str],
    n_orbitals: dict[str, int],
) -> Graph:
    """The `Graph` of one structure; `species_order` fixes species indices, `n_orbitals` the block sizes."""
    unknown = sorted(set(symbols) - set(species_order))
    if unknown:
        raise ValueError(f"elements {unknown} are not in the model's species {species_order}")
    index = {s: k for k, s in enumerate(species_order)}
    species = np.array([index[s] for s in symbols], dtype=np.int64)
    i, j, S = neighbor_pairs(positions, cell, pbc, cutoff)
    unique, edge_shift = np.unique(np.concatenate([np.zeros((1, 3), np.int64), S]), axis=0, return_inverse=True)
    edge_shift = edge_shift.reshape(-1)
    zero = int(edge_shift[0])
    sizes = np.array([n_orbitals[s] for s in symbols], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    ns = len(species_order)
    node_groups = tuple(torch.from_numpy(np.nonzero(species == a)[0]) for a in range(ns))
    si, sj = species[i], species[j]
    edge_groups = tuple(
        tuple(torch.from_numpy(np.nonzero((si == a) & (sj == b))[0]) for b in range(ns)) for a in range(ns)
    )
    group_pos = np.zeros(len(i), dtype=np.int64)
    for row in edge_groups:
        for idx in row:
            group_pos[idx.numpy()] = np.arange(len(idx))
    t = torch.from_numpy
    return Graph(
        species=t(species),
        edge_i=t(i),
        edge_j=t(j),
        shifts=t(S),
        unique_shifts=t(unique.astype(np.int64)),
        edge_shift=t(edge_shift[1:].astype(np.int64)),
        zero_shift=zero,
        reverse=t(reverse_edges(i, j, S)),
        orbital_offsets=t(offsets),
        node_groups=node_groups,
        edge_groups=edge_groups,
        edge_group_pos=t(group_pos),
    )


def edge_vectors(positions: Tensor, cell: Tensor, graph: Graph) -> Tensor:
    """r_ij = pos[j] − pos[i] + R·cell [E, 3] (Å), differentiable in positions [N, 3] and cell [3, 3]."""
    shift_vec = graph.shifts.to(positions.dtype) @ cell  # [E, 3]
    return positions[graph.edge_j] - positions[graph.edge_i] + shift_vec


class GraphCache:
    """Neighbour graphs reused while nothing invalidates them — the one graph cache of an `EnergyModel`, shared by
    its terms (the H network's graph, the tabulated S's longer one) and by `NNHPotential`.

    An entry is keyed on (cutoff, skin) and built at cutoff + skin (Å); it is reused until the symbols, pbc, cell
    or device change or some atom has moved more than skin/2 since it was built. Edges beyond a term's cutoff add
    exactly zero, so results do not depend on when an entry was rebuilt. `n_builds` counts the builds.
    """

    def __init__(self, species: list[str], n_orbitals: dict[str, int]):
        self.species = list(species)
        self.n_orbitals = dict(n_orbitals)
        self._entries: dict[tuple[float, float], tuple[tuple, np.ndarray, Graph]] = {}
        self.n_builds = 0

    def get(self, symbols, pbc, positions: np.ndarray, cell: np.ndarray, cutoff: float, skin: float = 0.0,
            device: torch.device | str | None = None) -> Graph:
        """The graph of all pairs within cutoff + skin of this structure (rebuilt only when needed, see class)."""
        positions = np.asarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64)
        key = (tuple(symbols), tuple(bool(x) for x in np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))),
               cell.tobytes(), str(device))
        slot = (float(cutoff), float(skin))
        old = self._entries.get(slot)
        if (old is None or old[0] != key or old[1].shape != positions.shape
                or np.sqrt(((positions - old[1]) ** 2).sum(-1)).max() > 0.5 * skin):
            g = build_graph(list(symbols), positions, cell, pbc, cutoff + skin, self.species, self.n_orbitals)
            self._entries[slot] = (key, positions.copy(), g.to(device) if device is not None else g)
            self.n_builds += 1
        return self._entries[slot][2]

    def clear(self) -> None:
        """Forget every graph (the next `get` rebuilds)."""
        self._entries.clear()
