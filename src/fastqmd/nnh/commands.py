"""CLI: `fastqmd train CONFIG.yaml` (NNH training, resumable, torchrun-aware) and
`fastqmd evaluate MODEL DATASET` (accuracy JSON + figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fastqmd.cli_options import at_least


def train_cmd(
    config: Path = typer.Argument(..., help="Training config (YAML); model.kind picks the model kind (nnh, the "
                                  "default: fastqmd.nnh.train.TrainConfig; bp, equivariant: fastqmd.mlip.kind)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start afresh even if a checkpoint exists"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", callback=at_least(1), help="override max_steps"),
) -> None:
    """Train a model of kind `model.kind` (NN-Hamiltonian energy model on H, forces, energies (and S) by default;
    bp / equivariant energy MLIPs); kill and rerun to resume.
    Data parallel: torchrun --nproc_per_node P -m fastqmd.cli train CONFIG.yaml"""
    from fastqmd.training.registry import load_train_config

    kind, cfg = load_train_config(config)
    from fastqmd.training.loop import fit  # torch: after the config is known to be valid
    if max_steps is not None:
        cfg = cfg.model_copy(update={"max_steps": max_steps})
    s = fit(kind, cfg, overwrite=overwrite)
    how = f"resumed at step {s['resumed_from']}" if s["resumed_from"] is not None else "new run"
    test = s.get("test") or {}
    extra = ""
    if "H_mae_eV" in test:
        extra = f", test H MAE {test['H_mae_eV']:.3g} eV, F MAE {test['F_mae_eV_A']:.3g} eV/Å"
    elif "E_mae_meV_atom" in test:
        extra = f", test E MAE {test['E_mae_meV_atom']:.3g} meV/atom" + (
            f", F MAE {test['F_mae_meV_A']:.3g} meV/Å" if "F_mae_meV_A" in test else "")
    took = f"{s['wall_time_s']:.1f} s" + (f" ({s['wall_time_s_all_runs']:.1f} s all runs)"
                                            if s["resumed_from"] is not None else "")
    typer.echo(f"train: {s['steps']} steps ({how}) in {took}{extra} -> {cfg.output}/model.pt")


def evaluate_cmd(
    model: Path = typer.Argument(..., help="model.pt or checkpoint.pt from `fastqmd train` (NNH, bp, "
                                 "equivariant), or a universal MLIP KIND[:MODEL]: sevenn:7net-0, chgnet, ..."),
    dataset: Path = typer.Argument(..., help="dataset (.h5), or any ASE-readable labelled file (extxyz, traj, ...: "
                                   "energy and/or forces; info['orbital_energies'] eV at Γ when present)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="output folder (default: MODEL_eval/; "
                                          "DATA_KIND-MODEL_eval/ for a universal MLIP)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    bands: Optional[str] = typer.Option(None, "--bands", help="band structure of a perfect crystal along its "
                                        "high-symmetry path vs the dataset's engine unfolded from the N×N×N "
                                        "supercell: CRYSTAL-ELEMENT[@a]:N, e.g. fcc-Cu:4"),
    subset: Optional[str] = typer.Option(None, "--subset", help="train, val or test: only the samples of that "
                                         "split (from split.json next to MODEL, written by `fastqmd train`)"),
    modal: Optional[str] = typer.Option(None, "--modal", help="fidelity of a multi-fidelity SevenNet (7net-mf-0: "
                                        "PBE or R2SCAN)"),
) -> None:
    """Errors of a model against reference data → evaluation.json (+ PNG figures for NNH on a dataset): energy
    raw and with the constant / per-element offset removed, forces, per structure; H and eigenvalues for NNH."""
    from fastqmd.config import check_output_dir
    from fastqmd.errors import InputError
    from fastqmd.nnh.evaluate import evaluate_files

    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda requested but CUDA is not available")
    spec = _universal_spec(model)
    if spec is not None:
        _evaluate_universal(spec, dataset, output, device, bands, subset, modal)
        return
    if modal is not None:
        raise InputError("--modal is an option of multi-fidelity SevenNet models (MODEL sevenn:7net-mf-0)")
    out = check_output_dir(output or model.with_name(model.stem + "_eval"))
    from fastqmd.evaluation import is_dataset
    from fastqmd.mlip.kind import is_mlip_file

    if is_mlip_file(model):  # an energy MLIP (model.kind bp / equivariant): E and F errors only
        if dataset.is_file() and not is_dataset(dataset):
            _evaluate_mlip_file(model, dataset, out, device, bands, subset)
        else:
            _evaluate_mlip(model, dataset, out, device, bands, subset)
        return
    if bands is not None:
        from fastqmd.nnh.bands import parse_crystal

        parse_crystal(bands)  # fail on a bad spec before the evaluation runs
    keys = subset_keys(model, subset) if subset is not None else None
    m, files = evaluate_files(model, dataset, out, device=device, bands=bands, keys=keys)
    f = m["forces_eV_per_A"]
    eig = (m.get("eigenvalue_mae_eV") or {}).get("all")
    typer.echo(f"evaluate: {m['n_samples']} samples"
               + (f", H MAE {m['H_mae_eV']:.3g} eV ({m['H_mae_uEh']:.3g} μEh)" if "H_mae_eV" in m else "")
               + (f", eigenvalue MAE {eig:.3g} eV" if eig is not None else "")
               + _energy_summary(m)
               + (f", force MAE {f['mae']:.3g} eV/Å" if f else "")
               + (f", band MAE {1e3 * m['bands']['mae_eV']:.3g} meV" if "bands" in m else "")
               + f" -> {', '.join(str(p) for p in files)}")


def _energy_summary(m: dict) -> str:
    if m.get("energy_mae_meV_per_atom") is None:
        return ""
    return (f", E MAE {m['energy_mae_meV_per_atom']:.3g} meV/atom raw, {m['energy_mae_meV_per_atom_offset']:.3g} "
            f"with the {m['energy_offset_used'].replace('_', '-')} offset removed")


def _universal_spec(model: Path) -> tuple[str, str] | None:
    """(kind, name) when MODEL is not a file but a universal MLIP spec KIND[:MODEL] (an unknown KIND with a ':' is
    one InputError); None for a model file path (missing or not)."""
    from fastqmd.mlip.universal import KINDS, parse_spec

    s = str(model)
    if model.exists() or (":" not in s and s not in KINDS):
        return None
    return parse_spec(s)


def _write_evaluation(m: dict, out: Path) -> Path:
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(m, indent=1))
    return out / "evaluation.json"


def _score_and_report(pot, data: Path, out: Path, label: str, covers, **meta) -> None:
    """Score a potential on `data` with the shared scorer (fastqmd.evaluation), write evaluation.json, echo."""
    from fastqmd.evaluation import evaluate_potential

    m = evaluate_potential(pot, data, covers=covers)
    m.update(meta, dataset=str(data))
    path = _write_evaluation(m, out)
    f = m["forces_eV_per_A"]
    typer.echo(f"evaluate: {label}{m['n_samples']} structures" + _energy_summary(m)
               + (f", force MAE {1e3 * f['mae']:.4g} meV/Å" if f else "") + f" -> {path}")


def _evaluate_universal(spec: tuple[str, str], data: Path, output, device: str, bands, subset, modal) -> None:
    """A universal MLIP (fastqmd.mlip.universal) on a dataset or an ASE file through fastqmd.evaluation."""
    from fastqmd.config import check_output_dir
    from fastqmd.errors import InputError
    from fastqmd.evaluation import check_data
    from fastqmd.mlip.universal import load_universal

    kind, name = spec
    if bands is not None:
        raise InputError("--bands needs an NNH model (a universal MLIP has no Hamiltonian)")
    if subset is not None:
        raise InputError("--subset reads the split.json of a fastqmd training run; a universal MLIP has none")
    check_data(data)  # before the (slow) model load
    slug = f"{kind}-{Path(name).stem if Path(name).is_file() else name}"
    out = check_output_dir(output or data.with_name(f"{data.stem}_{slug}_eval"))
    pot = load_universal(kind, name, device=device, modal=modal)
    _score_and_report(pot, data, out, f"{pot.spec} on ", pot.check_numbers, model=pot.spec)


def _evaluate_mlip_file(model: Path, data: Path, out: Path, device: str, bands, subset) -> None:
    """A bp / equivariant MLIP on an ASE file through fastqmd.evaluation."""
    from fastqmd.errors import InputError
    from fastqmd.evaluation import check_data
    from fastqmd.mlip.potential import MLIPPotential

    if bands is not None:
        raise InputError("--bands needs an NNH model (an energy MLIP has no Hamiltonian)")
    if subset is not None:
        raise InputError(f"--subset selects samples of a fastqmd dataset; {data} is a structure file")
    check_data(data)
    pot = MLIPPotential.from_file(model, device)
    _score_and_report(pot, data, out, "", pot.check_elements, model=str(model),
                      architecture=pot.model.architecture)


def _evaluate_mlip(model: Path, dataset: Path, out: Path, device: str, bands, subset) -> None:
    import json

    from fastqmd.errors import InputError
    from fastqmd.mlip.kind import evaluate_mlip

    if bands is not None:
        raise InputError("--bands needs an NNH model (an energy MLIP has no Hamiltonian)")
    keys = subset_keys(model, subset) if subset is not None else None
    m = evaluate_mlip(model, dataset, keys, device)
    from fastqmd.evaluation import evaluate_potential  # the shared scorer: offsets, meV/Å keys, per structure
    from fastqmd.mlip.potential import MLIPPotential

    pot = MLIPPotential.from_file(model, device)
    m = {**evaluate_potential(pot, dataset, covers=pot.check_elements, keys=keys), **m}
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(m, indent=1))
    typer.echo(f"evaluate: {m['n_samples']} samples, E MAE {m['E_mae_meV_atom']:.3g} meV/atom"
               + (f" ({m['energy_mae_meV_per_atom_offset']:.3g} with the "
                  f"{m['energy_offset_used'].replace('_', '-')} offset removed)" if "energy_offset_used" in m else "")
               + (f", force MAE {m['F_mae_meV_A']:.3g} meV/Å" if "F_mae_meV_A" in m else "")
               + f" -> {out / 'evaluation.json'}")


def subset_keys(model: Path, subset: str) -> list[str]:
    """Sample keys of one split of the training run that wrote `model` (its folder's split.json)."""
    import json

    from fastqmd.errors import InputError

    if subset not in ("train", "val", "test"):
        raise InputError(f"--subset must be train, val or test, got {subset!r}")
    path = model.parent / "split.json"
    if not path.is_file():
        raise InputError(f"--subset needs {path} (written by `fastqmd train` next to model.pt)")
    keys = json.loads(path.read_text()).get(subset) or []
    if not keys:
        raise InputError(f"{path}: the {subset} split is empty")
    return keys


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
