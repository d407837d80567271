"""`fastqmd evaluate MODEL DATASET`: accuracy of a trained NNH model against reference data → JSON + PNG.

In:  a model file / checkpoint (`fastqmd.nnh.checkpoint`) and a dataset (all ok samples, or given keys) — or an
     ASE-readable labelled file (`evaluate_structure_file`: energy, forces, orbital energies; no H, no figures).
Out: metrics (dict, written as JSON), streamed sample by sample (running sums; memory independent of the set size):
  - H: MAE |H_NN(k) − H_DFT(k)| over all elements (eV and μEh; RMSE, max), and the element-wise MAE per orbital
    pair (species pair, orbital μ, orbital ν; on-site and off-site separately) — the heatmap of the study's Fig. 2;
  - eigenvalues of (H_NN, S) vs the stored reference eigenvalues: MAE over all states, occupied states
    (reference occupation > half of the spin factor) and states within ±1 eV of the reference Fermi level;
  - energy (per structure and per atom; raw and with the constant / per-element offset removed), force MAE/RMSE
    (eV, eV/Å and meV/Å) and the per-structure table — `fastqmd.evaluation`, shared by every model kind;
  and PNGs: hamiltonian_error.png (heatmaps, meV) and, for periodic samples, bands.png — eigenvalues at the
  stored k-points, reference solid red vs model dashed black.
With `bands` (e.g. "fcc-Cu:4", `fastqmd.nnh.bands.parse_crystal`; the study's Fig. 3): bands.png is the band
structure of the perfect crystal along its high-symmetry path, model dashed black vs the dataset's reference
engine along the path from its n×n×n-mesh density where it has k-points (GPAW: solid red) or unfolded from the Γ
point of the n×n×n supercell (Γ-only engines: red markers), the "bands" entry of the JSON holds the
band MAE and Fermi levels (`fastqmd.nnh.bands.evaluate_bands`), and the stored-k figure moves to levels.png.
Units: eV, Å; 1 Eh = `fastqmd.units.HARTREE_EV` eV.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fastqmd.nnh.checkpoint import load_energy_model
from fastqmd.nnh.energy import EnergyModel, energy_forces
from fastqmd.nnh.targets import Target, load_targets
from fastqmd.evaluation import FERMI_WINDOW_EV  # noqa: F401 (re-exported)
from fastqmd.units import HARTREE_EV


def predict(model: EnergyModel, t: Target, device="cpu"):
    """(E, F [N, 3], H(k), eigenvalues [nk, n]) of the model for target t (numpy); the eigenvalues are those
    of the energy's own eigensolve (`EnergyParts.spectrum`)."""
    g = model.graph(t.frame.symbols, t.positions.numpy(), t.cell.numpy(), t.frame.pbc).to(device)
    parts, F, _ = energy_forces(model, t.frame, t.positions.to(device).clone(), t.cell.to(device), g)
    return (float(parts.energy.detach()), F.detach().cpu().numpy(), parts.H.detach().cpu().numpy(),
            parts.spectrum.eigenvalues.detach().cpu().numpy())


def check_dataset_fits(model: EnergyModel, dataset: Path, keys: list[str] | None = None) -> None:
    """The dataset's samples (`keys`, default all ok ones) must exist and hold only elements the model knows,
    in the model's basis (the shells it predicts blocks for): else one InputError, before any work."""
    from fastqmd.data.store import Dataset
    from fastqmd.errors import InputError

    ds = Dataset(dataset)
    try:
        ok = ds.keys("ok")
        if keys is not None:
            missing = sorted(set(keys) - set(ok))
            if missing:
                raise InputError(f"{dataset} has no successful sample {missing[0]} (of {len(missing)} asked for); "
                                 "is --subset's split.json from a model of another dataset?")
        numbers = set()
        for k in keys if keys is not None else ok:
            numbers.update(int(z) for z in ds.group(k)["numbers"][()])
        shells = ds.basis.shells
    finally:
        ds.close()
    from ase.data import chemical_symbols

    elements = sorted(chemical_symbols[z] for z in numbers)
    lacking = [el for el in elements if el not in model.species]
    if lacking:
        raise InputError(f"{dataset} holds {', '.join(lacking)}, but the NNH model has no element "
                         f"{', '.join(lacking)} (its elements: {', '.join(model.species)})")
    basis = model.config.h.basis
    for el in elements:
        if tuple(shells.get(el, ())) != tuple(basis[el]):
            raise InputError(f"{dataset}: basis of {el} is l = {list(shells.get(el, ()))}, the model's is "
                             f"l = {list(basis[el])} (a dataset of another engine or basis)")


def pair_labels(model: EnergyModel) -> dict[str, list[str]]:
    """Orbital labels per species, e.g. O: ['s0', 'p-1', 'p0', 'p1', ...] (shell letter + m)."""
    names = "spdfgh"
    out = {}
    for s in model.species:
        out[s] = [f"{names[l]}{k}:{m}" for k, l in enumerate(model.h.layout.shells[s]) for m in range(-l, l + 1)]
    return out


def pair_block_sums(d: np.ndarray, symbols, n_orb: dict[str, int]) -> dict[str, tuple[np.ndarray, int]]:
    """Σ over atom pairs of the [n_a, n_b] blocks of d [nao, nao], per class "onsite A-A" / "offsite A-B"
    (atoms a = b / a ≠ b of species A, B), with the number of blocks; classes with no block are left out."""
    off = np.cumsum([0] + [n_orb[s] for s in symbols])
    out = {}
    species = list(dict.fromkeys(symbols))
    for sa in species:
        ia = [a for a, s in enumerate(symbols) if s == sa]
        oa = np.array([np.arange(off[a], off[a + 1]) for a in ia])  # [n_A, n_orb_A]
        for sb in species:
            ib = [b for b, s in enumerate(symbols) if s == sb]
            ob = np.array([np.arange(off[b], off[b + 1]) for b in ib])
            blocks = d[oa[:, None, :, None], ob[None, :, None, :]]  # [n_A, n_B, n_orb_A, n_orb_B]
            total, n = blocks.sum((0, 1)), len(ia) * len(ib)
            if sa == sb:
                diag = blocks[np.arange(len(ia)), np.arange(len(ia))]  # the same atom twice: on-site
                out[f"onsite {sa}-{sa}"] = (diag.sum(0), len(ia))
                total, n = total - diag.sum(0), n - len(ia)
            if n:
                out[f"offsite {sa}-{sb}"] = (total, n)
    return out


def evaluate(model: EnergyModel, targets, device="cpu") -> tuple[dict, dict]:
    """(metrics JSON dict, arrays for plots), streamed over `targets` (one sample in memory at a time):
    |ΔH| as a running sum and count overall and per orbital pair (the mean over k-points of each atom-pair block,
    summed per class of `pair_block_sums`), E/F/level errors through `fastqmd.evaluation.Scorer`."""
    from fastqmd.evaluation import RunningError, Scorer, level_errors, reference_fermi_level

    n_orb = model.h.layout.n_orbitals
    heat_sum: dict[str, np.ndarray] = {}
    heat_n: dict[str, int] = {}
    h_err = RunningError()
    scorer = Scorer()
    bands = []
    spin = model.config.spin_factor
    for t in targets:
        E, F, H, eig = predict(model, t, device)
        d = np.abs(H - t.H.numpy())  # [nk, nao, nao]
        h_err.add(d)
        for key, (blk, n) in pair_block_sums(d.mean(0), t.frame.symbols, n_orb).items():
            heat_sum[key] = heat_sum.get(key, 0) + blk
            heat_n[key] = heat_n.get(key, 0) + n
        ref_eig, occ = t.eigenvalues.numpy(), t.occupations.numpy()
        mu = reference_fermi_level(ref_eig, occ, t.fermi_level, spin)
        scorer.add(t.key, [chemical_number(s) for s in t.frame.symbols], E, t.energy, F,
                   None if t.forces is None else t.forces.numpy(), level_errors(eig, ref_eig, occ, mu, spin))
        if any(t.frame.pbc) and len(bands) < 1:
            bands.append((ref_eig, eig, mu, t.key))
    heat = {k: (heat_sum[k] / heat_n[k]) for k in heat_sum}
    common = scorer.metrics()
    metrics = {
        "n_samples": common["n_samples"],
        "H_mae_eV": h_err.mean(), "H_mae_uEh": h_err.mean() / HARTREE_EV * 1e6,
        "H_rmse_eV": h_err.stat()["rmse"], "H_max_abs_eV": h_err.max_abs,
        "H_max_pair_mae_eV": float(max(v.max() for v in heat.values())),
        "H_pair_mae_eV": {k: v.tolist() for k, v in heat.items()},
        "orbital_labels": pair_labels(model),
        **common,
    }
    return metrics, {"heat": heat, "bands": bands}


def chemical_number(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


def plot(metrics: dict, arrays: dict, out_dir: Path, levels_name: str = "bands.png") -> list[Path]:
    """hamiltonian_error.png (per-pair MAE heatmaps, meV) and `levels_name` (stored-k levels, periodic samples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    heat = arrays["heat"]
    labels = metrics["orbital_labels"]
    keys = sorted(heat)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys):
        sa, sb = k.split()[1].split("-")
        im = ax.imshow(1e3 * heat[k], cmap="viridis")
        ax.set_title(k, fontsize=9)
        ax.set_xticks(range(len(labels[sb])), labels[sb], rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels[sa])), labels[sa], fontsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046, label="MAE (meV)")
    fig.suptitle(f"|H_NN − H_ref| per orbital pair; overall {1e3 * metrics['H_mae_eV']:.3g} meV")
    fig.tight_layout()
    files.append(out_dir / "hamiltonian_error.png")
    fig.savefig(files[-1], dpi=120)
    plt.close(fig)
    if arrays["bands"]:
        ref, nn, mu, key = arrays["bands"][0]
        fig, ax = plt.subplots(figsize=(4.5, 4))
        if ref.shape[0] > 1:  # bands across the stored k-points
            x, R, M, xlabel = np.arange(ref.shape[0]), ref - mu, nn - mu, "stored k-point index"
        else:  # Γ-only supercell: the levels at Γ against their index
            x, R, M, xlabel = np.arange(ref.shape[1]), (ref - mu).T, (nn - mu).T, "state index (Γ)"
        ax.plot(x, R, "-", color="red", lw=1.2)
        ax.plot(x, M, "--", color="black", lw=1.0)
        ax.plot([], [], "-", color="red", label="reference")
        ax.plot([], [], "--", color="black", label="NNH")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ε − μ_ref (eV)")
        ax.set_title(f"sample {key}")
        ax.legend()
        fig.tight_layout()
        files.append(out_dir / levels_name)
        fig.savefig(files[-1], dpi=120)
        plt.close(fig)
    return files


def reference_engine(dataset: Path):
    """The dataset's reference engine rebuilt from its header (engine name + settings), Γ point only (an engine
    with k-points, GPAW, computes its k-path bands on its own mesh: `fastqmd.nnh.bands.evaluate_bands`)."""
    from fastqmd.data.store import read_header
    from fastqmd.reference.config import build_engine, parse_engine_config

    from fastqmd.errors import InputError
    from fastqmd.reference.config import GPAWLCAOConfig, PySCFMolConfig, PySCFPBCConfig, TBLiteConfig

    header = read_header(Path(dataset))
    data = {"kind": header.engine}
    kinds = [c.model_fields["kind"].default for c in (PySCFMolConfig, PySCFPBCConfig, TBLiteConfig, GPAWLCAOConfig)]
    if header.engine not in kinds:
        raise InputError(f"--bands rebuilds the dataset's reference engine, but {dataset} was made by "
                         f"'{header.engine}' (known: {', '.join(kinds)})")
    probe = parse_engine_config(data)
    data.update({k: v for k, v in header.settings.items() if k in type(probe).model_fields and k != "kind"})
    for key in ("kmesh", "kpts"):
        if key in data:
            data[key] = (1, 1, 1)  # the unfolding needs the supercell at Γ (a k-path engine takes its own mesh)
    return build_engine(parse_engine_config(data))


def evaluate_files(model_path: Path, dataset: Path, out_dir: Path, device: str = "cpu",
                   keys: list[str] | None = None, bands: str | None = None) -> tuple[dict, list[Path]]:
    """Load, evaluate, write out_dir/evaluation.json and the PNGs; `bands` (e.g. "fcc-Cu:4") adds the
    high-symmetry-path band structure (module docstring). `dataset` may also be an ASE-readable labelled file
    (`evaluate_structure_file`)."""
    from fastqmd.evaluation import is_dataset

    if Path(dataset).is_file() and not is_dataset(dataset):
        return evaluate_structure_file(model_path, dataset, out_dir, device=device, keys=keys, bands=bands)
    model = load_energy_model(model_path, device=device)
    check_dataset_fits(model, dataset, keys)
    engine = reference_engine(dataset) if bands else None  # a dataset of a foreign engine fails before any work
    targets = load_targets(dataset, keys)
    metrics, arrays = evaluate(model, targets, device)
    metrics.update(model=str(model_path), dataset=str(dataset), data_format="fastqmd-dataset")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = plot(metrics, arrays, out_dir, levels_name="levels.png" if bands else "bands.png")
    if bands:
        from fastqmd.nnh.bands import evaluate_bands, parse_crystal, plot_bands

        prim, n = parse_crystal(bands)
        bm, barr = evaluate_bands(model, prim, n, engine)
        metrics["bands"] = {"spec": bands, **bm}
        how = (f"reference k-path from the {n}×{n}×{n}-mesh density" if bm["reference"] == "k-path" else
               f"reference unfolded from the {n}×{n}×{n} supercell (Γ)")
        plot_bands(barr, out_dir / "bands.png", title=f"{bands}: {how}; band MAE {1e3 * bm['mae_eV']:.3g} meV")
        files.append(out_dir / "bands.png")
    (out_dir / "evaluation.json").write_text(json.dumps(metrics, indent=1))
    return metrics, [out_dir / "evaluation.json", *files]


def evaluate_structure_file(model_path: Path, data: Path, out_dir: Path, device: str = "cpu",
                            keys: list[str] | None = None, bands: str | None = None) -> tuple[dict, list[Path]]:
    """An NNH model on the frames of an ASE file (`fastqmd.evaluation`: energy raw and offset-removed, forces, and
    Γ orbital energies where the file has them), through `NNHPotential` (Γ) → out_dir/evaluation.json. No H
    reference in a file: no H metrics, no figures."""
    from ase.data import chemical_symbols

    from fastqmd.errors import InputError
    from fastqmd.evaluation import check_data, evaluate_potential
    from fastqmd.nnh.potential import NNHPotential

    if bands is not None:
        raise InputError(f"--bands rebuilds a dataset's reference engine; {data} is a structure file")
    check_data(data, keys)  # unreadable / unlabelled: before the model loads
    model = load_energy_model(model_path, device=device)
    m = evaluate_potential(NNHPotential(model, device=device), data,
                           covers=lambda zs: model.check_elements([chemical_symbols[z] for z in zs]),
                           spin_factor=model.config.spin_factor, n_electrons=model.n_electrons)
    m.update(model=str(model_path), dataset=str(data))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(m, indent=1))
    return m, [out_dir / "evaluation.json"]
