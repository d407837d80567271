"""Ablation on one split: the orbital-basis H loss alone against + the spectral H loss (loss.spectral_H = 1),
Cu32 GPAW LCAO PBE/dzp, H-only training (benchmarks/nnh_cu_dft/train_cu32.yaml architecture).

Reads each run's metrics.jsonl (validation H MAE and eigenvalue MAE within E_F ± 1 eV by step) and its
`fastqmd evaluate --subset test` evaluation.json; writes spectral_ablation.json and spectral_ablation.png
(log-log learning curves).

  .venv/bin/python benchmarks/nnh_cu_dft/spectral_ablation.py NAME=RUN,EVAL [NAME=RUN,EVAL ...] [--note TEXT ...]

A run on another dataset (the szp(dzp) relabelling of the same cells) can be added: its own reference, same split.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent


def curve(run: Path) -> dict[int, dict]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        x = json.loads(line)
        if "val" in x:
            out[int(x["step"])] = {"H_mae_meV": 1e3 * x["val"]["H_mae_eV"],
                                   "eig_fermi_mae_meV": 1e3 * x["val"].get("eig_fermi_mae_eV", float("nan"))}
    return out


def test_metrics(ev: Path) -> dict:
    m = json.loads((ev / "evaluation.json").read_text())
    keep = {k: m[k] for k in ("n_samples", "H_mae_eV", "H_rmse_eV", "H_max_abs_eV") if k in m}
    out = {k.replace("_eV", "_meV"): 1e3 * v if k.endswith("_eV") else v for k, v in keep.items()}
    eig = m.get("eigenvalue_mae_eV") or m.get("orbital_energy_mae_eV") or {}
    out["eigenvalue_mae_meV"] = {k: (1e3 * v if isinstance(v, float) else v) for k, v in eig.items()}
    return out


def main(argv: list[str]) -> dict:
    notes = [a for i, a in enumerate(argv) if i and argv[i - 1] == "--note"]
    specs = [a for a in argv if "=" in a and a not in notes]
    runs = {a.split("=", 1)[0]: tuple(map(Path, a.split("=", 1)[1].split(","))) for a in specs}
    res = {"what": "issue 13 ablation, same 23 Cu32 cells and split: orbital-basis L_H vs L_H + 1·L_ε (spectral H "
                   "loss) on GPAW LCAO PBE/dzp, and L_H on the szp(dzp) relabelling; H-only, exact GPAW S",
           "runs": {}}
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for name, (run, ev) in runs.items():
        c = curve(run)
        summ = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
        res["runs"][name] = {"val_by_step": c, "test_split": test_metrics(ev), "split": summ.get("split"),
                             "wall_s": summ.get("wall_time_s_all_runs")}
        st = sorted(c)
        ax[0].loglog(st, [c[s]["H_mae_meV"] for s in st], "o-", label=name)
        ax[1].loglog(st, [c[s]["eig_fermi_mae_meV"] for s in st], "o-", label=name)
    ax[0].set(xlabel="optimizer step", ylabel="val H MAE (meV)", title="orbital-basis H error")
    ax[1].set(xlabel="optimizer step", ylabel="val |Δε| within E_F ± 1 eV (meV)", title="eigenvalues near E_F")
    for a in ax:
        a.axhline(12.0 if a is ax[1] else 1.0, color="grey", ls=":", lw=1)
        a.legend()
    fig.tight_layout()
    fig.savefig(HERE / "spectral_ablation.png", dpi=110)
    res["notes"] = notes
    res["commands"] = ["OMP_NUM_THREADS=1 .venv/bin/fastqmd train CONFIG  (CONFIG: train_cu32.yaml with max_steps 300; "
                       "+ loss.spectral_H: 1 for the second run; see spectral_ablation.json notes for the dataset)",
                       "OMP_NUM_THREADS=1 .venv/bin/fastqmd evaluate RUN/model.pt DATASET -o EVAL --subset test",
                       "python benchmarks/nnh_cu_dft/spectral_ablation.py " + " ".join(specs)]
    (HERE / "spectral_ablation.json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1)[:3000])
