"""Peak memory of a short `fastqmd train` run vs dataset size (issue 10, seam 3: one lazy reader).

Data: rattled fcc Cu 2×2×2 cubic cells (32 atoms, 288 orbitals, Γ only) labelled with tblite GFN1-xTB at 300 K by
direct engine calls (no Dask), written with the fastqmd store: the first n of one list of structures for every
size n, so the sets are nested. Each training run is a fresh process (tiny model, table overlap, 1 H-only step +
1 joint step, batch 2, validation on 10 %, test on 10 %); its peak resident set size (`ru_maxrss`) is recorded.
If training reads samples lazily, the peak does not grow with n; an in-memory loader grows by ≈ the H and S
bytes of the dataset (2 · 288² · 8 B = 1.3 MB per sample).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training_memory/training_memory.py --sizes 20 80 --label after
Writes benchmarks/training_memory/training_memory.json (one entry per label, merged into the file).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT = HERE / "training_memory.json"
MODEL = dict(cutoff=3.0, hidden_irreps="8x0e+4x1o+4x1e+2x2e+2x2o+2x3o+2x3e+2x4e", n_layers=1, radial_hidden=16, n_radial=6,
             n_scalars_embed=8, repulsion_cutoff=2.5, lmax=4)


def make_datasets(folder: Path, sizes: list[int], seed: int = 0, rattle_A: float = 0.08) -> dict[int, Path]:
    """Cu32 GFN1 datasets of the given sizes (nested: the first n samples of one structure list)."""
    import numpy as np
    from ase.build import bulk

    from fastqmd.data.store import Header, atomic_write, write_header, write_sample
    from fastqmd.reference.xtb import TBLiteEngine

    eng = TBLiteEngine(method="GFN1-xTB", electronic_temperature_K=300.0)
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", cubic=True).repeat(2)
    samples = []
    for _ in range(max(sizes)):
        a = base.copy()
        a.positions += rattle_A * rng.normal(size=a.positions.shape)
        samples.append(eng.compute(a))
    paths = {}
    for n in sizes:
        def fill(f, n=n):
            write_header(f, Header(eng.name, eng.settings))
            for i, s in enumerate(samples[:n]):
                write_sample(f, i, s, "cu32-rattle", 2.0)

        paths[n] = folder / f"cu32_{n}.h5"
        atomic_write(paths[n], fill)
    return paths


def train_child(dataset: str, output: str) -> None:
    """One short training run in this process; prints its peak RSS (MiB) and wall time as JSON."""
    from fastqmd.nnh.train import TrainConfig, train

    t = time.perf_counter()
    cfg = TrainConfig(dataset=dataset, output=output, model=MODEL, loss=dict(h_only_steps=1, beta_F=1.0),
                      split=dict(val_fraction=0.1, test_fraction=0.1), max_steps=2, batch_size=2, eval_every=2,
                      checkpoint_every=2, ema_decay=0.9, dtype="float64", progress=False)
    train(cfg, overwrite=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"peak_rss_MiB": rss, "wall_s": time.perf_counter() - t}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 80])
    ap.add_argument("--label", required=True, help="e.g. before / after (the code state measured)")
    ap.add_argument("--data", type=Path, default=None, help="folder with cu32_<n>.h5 (made when missing)")
    ap.add_argument("--child", nargs=2, metavar=("DATASET", "OUTPUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return train_child(*args.child)
    folder = args.data or Path(tempfile.mkdtemp(prefix="train_mem_"))
    folder.mkdir(parents=True, exist_ok=True)
    missing = [n for n in args.sizes if not (folder / f"cu32_{n}.h5").is_file()]
    if missing:
        make_datasets(folder, sorted(set(args.sizes)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = []
    for n in args.sizes:
        ds = folder / f"cu32_{n}.h5"
        r = subprocess.run([sys.executable, __file__, "--label", args.label, "--child", str(ds),
                            str(folder / f"run_{n}")], env=env, capture_output=True, text=True, check=True)
        m = json.loads(r.stdout.strip().splitlines()[-1])
        runs.append({"n_samples": n, "dataset_MiB": ds.stat().st_size / 2**20, **m})
        print(runs[-1], flush=True)
    res = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    res["command"] = ("OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training_memory/training_memory.py "
                      "--sizes " + " ".join(map(str, args.sizes)) + f" --label {args.label}")
    res["system"] = "Cu32 fcc rattled 0.08 Å, tblite GFN1-xTB 300 K, Γ only (288 orbitals)"
    res[args.label] = {"runs": runs, "growth_MiB_per_sample": (runs[-1]["peak_rss_MiB"] - runs[0]["peak_rss_MiB"])
                       / max(1, runs[-1]["n_samples"] - runs[0]["n_samples"]) if len(runs) > 1 else None}
    RESULT.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
