"""Forward + backward wall time of the NN-Hamiltonian model on a 64-atom Cu cell (GFN1-like s, p, d basis).

Command (CPU, one thread, as in the committed JSON):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnh/model_timing.py --out benchmarks/nnh/model_timing_cpu.json
Measures: graph build (vesin, numpy), forward to H(Γ) [576, 576] (of which: assembly of the blocks into H(Γ);
and, separately without grad, the message-passing trunk), and backward of a scalar of H(Γ) to the positions
(the work a force evaluation adds on top of the eigensolve); median of `--repeat` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from ase.build import bulk

from fastqmd.nnh import NNHConfig, NNHModel, to_kspace

SMALL = dict(hidden_irreps="16x0e+8x1o+8x1e+8x2e+4x2o+4x3o+4x3e+4x4e", n_layers=2, radial_hidden=32,
             n_scalars_embed=16)


def cu64(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    atoms = bulk("Cu", "fcc", a=3.61).repeat((4, 4, 4))  # 64 atoms (primitive fcc cell repeated)
    rng = np.random.default_rng(seed)
    return atoms.get_chemical_symbols(), atoms.positions + rng.uniform(-0.1, 0.1, (64, 3)), np.array(atoms.cell)


def time_once(model, symbols, pos, cell, device, dtype):
    t0 = time.perf_counter()
    g = model.graph(symbols, pos, cell, True).to(device)
    t1 = time.perf_counter()
    p = torch.tensor(pos, dtype=dtype, device=device, requires_grad=True)
    c = torch.tensor(cell, dtype=dtype, device=device)
    blocks = model(p, c, g)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_blocks = time.perf_counter()
    H = to_kspace(blocks, g, torch.zeros(1, 3))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    (grad,) = torch.autograd.grad((H * H).sum(), p)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t3 = time.perf_counter()
    with torch.no_grad():  # breakdown: the message-passing trunk alone (no-grad, so a lower bound)
        t4 = time.perf_counter()
        model.node_features(p, c, g)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t5 = time.perf_counter()
    return dict(graph_s=t1 - t0, forward_s=t2 - t1, forward_assembly_s=t2 - t_blocks, trunk_nograd_s=t5 - t4,
                backward_s=t3 - t2, n_edges=int(g.edge_i.numel()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cutoffs", type=float, nargs="+", default=[5.0, 7.2])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    symbols, pos, cell = cu64()
    results = []
    for cutoff in args.cutoffs:
        for dt in args.dtypes:
            model = NNHModel(NNHConfig(basis={"Cu": (0, 1, 2)}, cutoff=cutoff, dtype=dt, **SMALL)).to(device)
            n_params = sum(p.numel() for p in model.parameters())
            time_once(model, symbols, pos, cell, device, model.dtype)  # warm-up
            runs = [time_once(model, symbols, pos, cell, device, model.dtype) for _ in range(args.repeat)]
            med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
            row = dict(cutoff_A=cutoff, dtype=dt, n_params=n_params, **med)
            row["forward_backward_s"] = row["forward_s"] + row["backward_s"]
            print(json.dumps(row))
            results.append(row)
    out = dict(system="Cu64 fcc a=3.61, rattled ±0.1 Å, basis s,p,d (9 orbitals/atom, nao=576)",
               model=SMALL, device=str(device), threads=torch.get_num_threads(), torch=torch.__version__,
               cpu=platform.processor() or platform.machine(), load_avg_1min_end=os.getloadavg()[0],
               note="shared 2-core machine: other jobs ran concurrently, times are upper bounds",
               results=results)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
