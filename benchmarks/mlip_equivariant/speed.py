"""Seconds per energy+forces+stress call of the equivariant MLIP on rattled fcc Cu (32 and 108 atoms), float32, one
thread, random weights (cost does not depend on the weights): the default spec and the water-demo-sized one.
    OMP_NUM_THREADS=1 python benchmarks/mlip_equivariant/speed.py"""

import time

import torch
from ase.build import bulk

from fastqmd.mlip.equivariant import EquivariantSpec
from fastqmd.mlip.kind import Structure, TrainingStatistics, build_model, neighbour_list
from fastqmd.mlip.potential import MLIPPotential
from fastqmd.potential import system_from_atoms

SPECS = {"default": {}, "demo": dict(cutoff=3.0, hidden_irreps="16x0e+8x1o+4x1e+4x2e", n_layers=2, radial_hidden=16,
                                     n_radial=6, n_scalars_embed=8)}


def main(calls: int = 3) -> None:
    torch.set_num_threads(1)
    for n in (2, 3):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(n)
        a.rattle(0.05, seed=0)
        for name, kw in SPECS.items():
            spec = EquivariantSpec(**kw)
            s = Structure("", a.numbers, a.positions, a.cell.array, a.pbc, 0.0)
            nn = len(neighbour_list(s, spec.cutoff)[0]) / len(a)
            torch.manual_seed(0)
            pot = MLIPPotential(build_model(spec, ["Cu"], TrainingStatistics((0.0,), 0.1, 1.0, nn), torch.float32))
            system = system_from_atoms(a)
            pot.compute(system)
            t = time.perf_counter()
            for _ in range(calls):
                pot.compute(system)
            print(f"Cu{len(a)} {name} (cutoff {spec.cutoff} Å, {spec.n_layers} layers, ⟨n⟩ {nn:.0f}, "
                  f"{sum(p.numel() for p in pot.model.parameters())} parameters): "
                  f"{(time.perf_counter() - t) / calls:.3f} s/call")


if __name__ == "__main__":
    main()
