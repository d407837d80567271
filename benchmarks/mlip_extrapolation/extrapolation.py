"""The lecture's extrapolation experiment (issue 12 part 5): can an MLIP trained on two probe charges at
d = 4–8 Å predict their Coulomb force out to d = 24 Å, far past its 5 Å cutoff?

Toy system (exact labels from `fastqmd.mlip.coulomb`, no DFT, no periodicity): probes +1 e (Na) and −1 e (Cl)
on the x axis at x = ∓d/2, inside a random "medium" filling the column |y|, |z| ≤ 3 Å,
|x| ≤ d/2 + 5.5 Å (density 0.04 Å⁻³, every pair ≥ 2.2 Å apart, so 5 Å hops connect the probes; the medium
reaches past each probe by more than BP's cutoff, so no 5 Å environment shows where the column ends). The
same geometries make both media:
  charged medium  medium particles of ±0.5 e (Li +0.5, F −0.5; half each, shuffled: net charge 0),
  neutral medium  medium particles of 0 e (Ar): the only energy is the probe pair's −k_e/d.
Training: d = 4, 5, 6, 7, 8 Å (the lecture's set), 48 structures each; per medium one equivariant model
(cutoff 5 Å, 5 message-passing layers: receptive field 25 Å) and one BP model (cutoff 5 Å), through
`fastqmd train` (the yaml files beside this script). Test: d = 4 … 24 Å, 6 new structures per d.

Measured per test structure (`analyse`; F model forces, F_ref exact, both probes averaged, ê probe → partner):
  pair_force         (F − F_medium) · ê, F_medium the exact force of the medium alone on the probe: the pair
                     force the model implies (the lecture's |F_tot − F_0|); exact: k_e/d² (attractive > 0).
  probe_force_error  |F − F_ref| on the probes (= the error of that pair force).
  deletion_force     (F − F(partner deleted, medium unchanged)) · ê on the +1 e probe: what reaches the probe
                     from the partner through message passing, free of the model's local errors.
  all_atom_force_mae the shared scorer's (`fastqmd.evaluation`) per-structure force MAE over all atoms.

  python benchmarks/mlip_extrapolation/extrapolation.py data      # datasets → demo_out/mlip_extrapolation/
  fastqmd train benchmarks/mlip_extrapolation/<medium>_<model>.yaml --overwrite   (4 runs)
  python benchmarks/mlip_extrapolation/extrapolation.py analyse   # → extrapolation.json, extrapolation.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from ase import Atoms

from fastqmd.data.schema import sample_key

HERE = Path(__file__).resolve().parent
OUT = Path("demo_out/mlip_extrapolation")

PROBES = {"Na": 1.0, "Cl": -1.0}  # e
MEDIA = {"charged": {"Li": 0.5, "F": -0.5}, "neutral": {"Ar": 0.0}}
HALF_WIDTH_A = 3.0  # column |y|, |z| ≤ 3 Å
MARGIN_A = 5.5  # medium beyond each probe along x (> BP cutoff)
DENSITY_PER_A3 = 0.04
MIN_DISTANCE_A = 2.2
TRAIN_D_A = (4.0, 5.0, 6.0, 7.0, 8.0)
TRAIN_PER_D = 48
TEST_D_A = (4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0, 24.0)
TEST_PER_D = 6
MODELS = ("equivariant", "bp")
EXTRA_RUNS = {"charged": ("equivariant_wide",)}  # analysed where their run finished (summary.json)


def column_geometry(d: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(probe positions [2, 3], medium positions [M, 3]) Å: probes at (∓d/2, 0, 0), M = round(ρV) (even)
    medium points by random sequential addition in the column, all pairs ≥ MIN_DISTANCE_A."""
    lo = np.array([-d / 2 - MARGIN_A, -HALF_WIDTH_A, -HALF_WIDTH_A])
    hi = -lo
    n = 2 * int(round(DENSITY_PER_A3 * np.prod(hi - lo) / 2))
    probes = np.array([[-d / 2, 0.0, 0.0], [d / 2, 0.0, 0.0]])
    points = list(probes)
    for _ in range(200_000):
        if len(points) == n + 2:
            break
        x = rng.uniform(lo, hi)
        if np.min(np.linalg.norm(np.asarray(points) - x, axis=1)) >= MIN_DISTANCE_A:
            points.append(x)
    else:
        raise RuntimeError(f"could not place {n} medium points at d = {d} Å")
    return probes, np.asarray(points[2:])


def structure(d: float, medium: str, probes: np.ndarray, points: np.ndarray, signs: np.ndarray,
              partner: bool = True) -> Atoms:
    """Probes Na (+1 e) at probes[0], Cl (−1 e) at probes[1] (omitted without `partner`), medium particles at
    `points`: Li/F by `signs` (±1) in the charged medium, Ar in the neutral one."""
    medium_symbols = ["Li" if s > 0 else "F" for s in signs] if medium == "charged" else ["Ar"] * len(points)
    symbols = ["Na"] + (["Cl"] if partner else []) + medium_symbols
    pos = np.vstack([probes[:1]] + ([probes[1:]] if partner else []) + [points])
    return Atoms(symbols, positions=pos, info={"d_A": float(d), "source": f"column d={d:g}"})


def geometries(ds, per_d: int, seed: int) -> list[tuple[float, np.ndarray, np.ndarray, np.ndarray]]:
    """(d, probes, medium points, medium signs) per structure, shared by both media."""
    rng = np.random.default_rng(seed)
    out = []
    for d in ds:
        for _ in range(per_d):
            probes, points = column_geometry(d, rng)
            signs = rng.permutation(np.repeat([1.0, -1.0], len(points) // 2))
            out.append((float(d), probes, points, signs))
    return out


def charges(medium: str) -> dict[str, float]:
    return {**PROBES, **MEDIA[medium]}


def make_data() -> None:
    from fastqmd.mlip.coulomb import write_coulomb_dataset

    for name, ds, per_d, seed in (("train", TRAIN_D_A, TRAIN_PER_D, 1), ("test", TEST_D_A, TEST_PER_D, 2)):
        geo = geometries(ds, per_d, seed)
        for medium in MEDIA:
            path = write_coulomb_dataset(OUT / f"{medium}_{name}.h5",
                                         [structure(*g[:1], medium, *g[1:]) for g in geo], charges(medium))
            n = [len(g[2]) + 2 for g in geo]
            print(f"{path}: {len(geo)} structures, {min(n)}–{max(n)} atoms")


def probe_measures(pot, d: float, medium: str, probes, points, signs) -> dict:
    """One test structure: the probes' force error, the pair force the model implies, and the deletion
    difference (module docstring), eV/Å; both probes averaged (ê points from each probe to its partner)."""
    from fastqmd.mlip.coulomb import charges_of, coulomb_energy_forces
    from fastqmd.potential import system_from_atoms

    full = structure(d, medium, probes, points, signs)
    alone = structure(d, medium, probes, points, signs, partner=False)
    q = charges_of(full.get_chemical_symbols(), charges(medium))
    _, F_ref = coulomb_energy_forces(full.positions, q)
    F_medium = np.stack([coulomb_energy_forces(full.positions, np.where(np.arange(len(q)) == 1 - p, 0.0, q))[1][p]
                         for p in (0, 1)])  # [2, 3] the force of the medium alone on each probe
    F = pot.compute(system_from_atoms(full)).forces.detach().cpu().numpy()[:2]  # [2, 3]
    F0 = pot.compute(system_from_atoms(alone)).forces.detach().cpu().numpy()[0]  # + probe, partner deleted
    e = (probes[1] - probes[0]) / d
    pair = F - F_medium  # [2, 3]
    return {"pair_force": float(0.5 * (pair[0] @ e - pair[1] @ e)),
            "probe_force_error": float(np.mean(np.linalg.norm(F - F_ref[:2], axis=1))),
            "deletion_force": float((F[0] - F0) @ e)}


def analyse() -> None:
    from fastqmd.evaluation import evaluate_potential
    from fastqmd.mlip.coulomb import COULOMB_K_EV_A
    from fastqmd.mlip.potential import MLIPPotential

    geo = geometries(TEST_D_A, TEST_PER_D, 2)
    result: dict = {"setup": {
        "probes_e": PROBES, "media_e": MEDIA, "column_half_width_A": HALF_WIDTH_A, "margin_A": MARGIN_A,
        "density_per_A3": DENSITY_PER_A3, "min_distance_A": MIN_DISTANCE_A, "train_d_A": TRAIN_D_A,
        "train_per_d": TRAIN_PER_D, "test_d_A": TEST_D_A, "test_per_d": TEST_PER_D, "k_e_eV_A": COULOMB_K_EV_A},
        "units": "eV/Å; by_d: mean and standard error over the test structures at each d",
        "ideal_pair_force": {f"{d:g}": COULOMB_K_EV_A * abs(PROBES["Na"] * PROBES["Cl"]) / d**2 for d in TEST_D_A},
        "media": {}}
    for medium in MEDIA:
        result["media"][medium] = {}
        extra = tuple(m for m in EXTRA_RUNS.get(medium, ())
                      if (OUT / f"{medium}_{m}" / "summary.json").is_file())
        for model in MODELS + extra:
            run = OUT / f"{medium}_{model}"
            pot = MLIPPotential.from_file(run / "model.pt")
            ev = evaluate_potential(pot, OUT / f"{medium}_test.h5")  # the shared scorer: all atoms
            mae = {row["key"]: 1e-3 * row["force_mae_meV_per_A"] for row in ev["per_structure"]}
            rows = [{"d": g[0], **probe_measures(pot, g[0], medium, *g[1:]), "all_atom_force_mae": mae[sample_key(k)]}
                    for k, g in enumerate(geo)]
            result["media"][medium][model] = {
                "model": str(run / "model.pt"), "train_summary": _summary(run),
                "test_set": {k: ev[k] for k in ("n_samples", "force_mae_meV_per_A", "force_rmse_meV_per_A",
                                                "energy_mae_meV_per_atom_offset")},
                "by_d": _by_d(rows)}
            print(medium, model, f"test F MAE {ev['force_mae_meV_per_A']:.1f} meV/Å")
    (HERE / "extrapolation.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    plot(result, HERE / "extrapolation.png")


def _summary(run: Path) -> dict:
    p = run / "summary.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _by_d(rows: list[dict]) -> dict:
    """Mean and standard error over the structures at each d (eV/Å)."""
    out = {}
    for d in sorted({r["d"] for r in rows}):
        sel = [r for r in rows if r["d"] == d]
        out[f"{d:g}"] = {k: {"mean": float(np.mean([r[k] for r in sel])),
                             "sem": float(np.std([r[k] for r in sel], ddof=1) / np.sqrt(len(sel)))}
                         for k in sel[0] if k != "d"}
    return out


def plot(result: dict, path: Path) -> None:
    """The lecture's figure, one column per medium: top, the pair force the model implies against the ideal
    k/d²; bottom, the force error on the probes (k/d² for scale: the error of a model blind to the partner)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result["setup"]["k_e_eV_A"] * abs(PROBES["Na"] * PROBES["Cl"])
    dd = np.linspace(4, 24, 200)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex=True, sharey="row")
    style = {"equivariant": ("o", "C0", "equivariant (5 layers × 5 Å)"), "bp": ("s", "C3", "BP (5 Å cutoff)"),
             "equivariant_wide": ("^", "C2", "wider equivariant (lmax 2)")}
    rows = (("pair_force", "pair force on the probes (eV/Å)\n(F_model − F_medium, exact) · ê",
             "ideal value F = k/d²"),
            ("probe_force_error", "force error on the probes\n|F_model − F_ref| (eV/Å)", "k/d² (the pair force)"))
    for col, medium in enumerate(MEDIA):
        for row, (key, ylabel, ideal) in enumerate(rows):
            ax = axes[row, col]
            ax.axvspan(4, 8, color="0.92", zorder=0, label="trained (d = 4–8 Å)")
            ax.axvline(5, color="0.5", lw=0.8, ls=":")
            ax.axhline(0, color="0.7", lw=0.6)
            ax.plot(dd, k / dd**2, "k--", lw=1, label=ideal)
            for model in result["media"][medium]:
                by = result["media"][medium][model]["by_d"]
                d = np.array([float(x) for x in by])
                m = np.array([by[x][key]["mean"] for x in by])
                s = np.array([by[x][key]["sem"] for x in by])
                mk, c, lab = style[model]
                ax.errorbar(d, m, yerr=s, fmt=mk, color=c, ms=5, capsize=2, label=lab)
            if col == 0:
                ax.set_ylabel(ylabel)
            if row == 0:
                qs = ", ".join(f"{q:+g} e" for q in MEDIA[medium].values())
                ax.set_title(f"{medium} medium ({qs}); probes ±1 e", fontsize=10)
            else:
                ax.set_xlabel("d (Å)")
            ax.text(5.15, 0.02, "R_c", color="0.4", transform=ax.get_xaxis_transform())
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(path)


if __name__ == "__main__":
    {"data": make_data, "analyse": analyse}[sys.argv[1]]()
