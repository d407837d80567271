"""Small CPU NNH pipeline benchmark: tblite GFN2 water → train → evaluate on the held-out test split → NNH NVE.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnh_train/water_gfn2_small.py [--samples 64] [--steps 600]

Writes benchmarks/nnh_train/water_gfn2_small.json (+ the evaluation PNG) — a smoke-scale measurement of what
one CPU core reaches in a few minutes, not study a (PySCF def2-SVP, ≥ 500 samples, GPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent


def make_dataset(path: Path, n: int, seed: int = 0, rattle: float = 0.06) -> float:
    from fastqmd.testing import make_water_dataset

    t0 = time.perf_counter()
    make_water_dataset(path, n, seed, rattle, source="bench-water")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args()
    from fastqmd.nnh.evaluate import evaluate_files
    from fastqmd.nnh.train import TrainConfig, train

    work = Path(tempfile.mkdtemp(prefix="nnh_bench_"))
    gen_s = make_dataset(work / "water.h5", args.samples)
    cfg = TrainConfig(
        dataset=work / "water.h5", output=work / "run",
        model=dict(cutoff=3.0, hidden_irreps="16x0e+8x1o+4x1e+4x2e", n_layers=2, radial_hidden=16, n_radial=6,
                   n_scalars_embed=8, repulsion_cutoff=2.5, lmax=2),
        split=dict(val_fraction=0.1, test_fraction=0.2), loss=dict(force_ramp_steps=100),
        schedule=dict(kind="cosine", warmup_steps=20), lr=5e-3, max_steps=args.steps, batch_size=4,
        eval_every=50, early_stopping_patience=None, checkpoint_every=100, dtype="float64", progress=False)
    summary = train(cfg, overwrite=True)
    from fastqmd.nnh.train import split_indices

    _, _, test = split_indices(args.samples, cfg.split)
    metrics, files = evaluate_files(work / "run" / "model.pt", work / "water.h5", work / "eval",
                                    keys=[f"{i:08d}" for i in test])
    shutil.copy(work / "eval" / "hamiltonian_error.png", HERE / "water_gfn2_small_hamiltonian_error.png")
    keep = {k: v for k, v in metrics.items() if k not in ("H_pair_mae_eV", "orbital_labels", "model", "dataset")}
    out = {"command": f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnh_train/water_gfn2_small.py "
                      f"--samples {args.samples} --steps {args.steps}",
           "machine": platform.processor() or platform.machine(), "threads": 1,
           "dataset": {"engine": "tblite GFN2-xTB 300 K", "samples": args.samples, "rattle_A": 0.06,
                       "generation_s": gen_s},
           "train": {k: summary[k] for k in ("steps", "wall_time_s", "split")}, "train_config": json.loads(
               cfg.model_dump_json()), "test_metrics": keep}
    out["train_config"].pop("dataset"), out["train_config"].pop("output")
    (HERE / "water_gfn2_small.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(keep, indent=1))


if __name__ == "__main__":
    main()
