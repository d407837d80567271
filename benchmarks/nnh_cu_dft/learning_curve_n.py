"""Issue 13 part 3, the learning curve vs the number of training structures of the Cu DFT study (36 Cu32 GPAW
PBE/szp(dzp) cells): 7, 14 and 28 training cells (nested, `split.n_train`; the same 4 val and 4 test cells), each
after the 400 H-only steps of the main run's H phase (same seed and schedule). Fits err ∝ n^−b to the validation H
MAE and extrapolates the number of cells the 1 meV target would need at this model and step count.

    OMP_NUM_THREADS=2 fastqmd train benchmarks/nnh_cu_dft/train_cu32_szp.yaml         (n = 28, the main run)
    OMP_NUM_THREADS=2 fastqmd train benchmarks/nnh_cu_dft/train_cu32_szp_n7.yaml
    OMP_NUM_THREADS=2 fastqmd train benchmarks/nnh_cu_dft/train_cu32_szp_n14.yaml
    OMP_NUM_THREADS=2 python benchmarks/nnh_cu_dft/learning_curve_n.py                → learning_curve_n.json/.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from charge_ablation import OUT, test_split, val_curve  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = {7: OUT / "cu32_szp_n7", 14: OUT / "cu32_szp_n14", 28: OUT / "cu32_szp"}
STEP = 400


def main() -> None:
    done = {n: r for n, r in RUNS.items() if (r / "metrics.jsonl").exists() and STEP in val_curve(r)}
    val = {n: val_curve(r)[STEP] for n, r in done.items()}
    test = {n: test_split(r, r.name) for n, r in done.items()}
    n = np.array(sorted(val), dtype=float)
    fit = None
    if len(n) >= 2:
        y = np.array([val[int(k)]["H_mae_meV"] for k in n])
        slope, icpt = np.polyfit(np.log(n), np.log(y), 1)
        fit = {"exponent_b": float(-slope), "n_for_1meV": float(np.exp((np.log(1.0) - icpt) / slope))
               if slope < 0 else None}
    out = {"what": f"val/test H MAE after {STEP} H-only steps vs training cells (Cu32 GPAW PBE/szp(dzp), nested)",
           "commands": __doc__.strip().splitlines()[-4:],
           "val_at_step_400": val, "test_split": test, "power_law_fit_val_H": fit,
           "note": "the n = 28 test figures are the main run's final model (H frozen after step 400; EMA drift)"}
    (HERE / "learning_curve_n.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    for a, key, label in ((ax[0], "H_mae_meV", "val H MAE (meV)"),
                          (ax[1], "eig_fermi_mae_meV", "val |Δε| within E_F ± 1 eV (meV)")):
        a.loglog(n, [val[int(k)][key] for k in n], "o-")
        a.set(xlabel="training cells (Cu32)", ylabel=label)
    ax[0].axhline(1.0, color="grey", ls=":", lw=1)
    fig.suptitle(f"Cu32 GPAW szp(dzp) NN Hamiltonian after {STEP} H-only steps")
    fig.tight_layout()
    fig.savefig(HERE / "learning_curve_n.png", dpi=110)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
