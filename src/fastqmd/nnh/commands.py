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
    model: Path = typer.Argument(..., help="model.pt or checkpoint.pt from `fastqmd train`"),
    dataset: Path = typer.Argument(..., help="dataset (.h5)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="output folder (default: MODEL_eval/)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    bands: Optional[str] = typer.Option(None, "--bands", help="band structure of a perfect crystal along its "
                                        "high-symmetry path vs the dataset's engine unfolded from the N×N×N "
                                        "supercell: CRYSTAL-ELEMENT[@a]:N, e.g. fcc-Cu:4"),
    subset: Optional[str] = typer.Option(None, "--subset", help="train, val or test: only the samples of that "
                                         "split (from split.json next to MODEL, written by `fastqmd train`)"),
) -> None:
    """H, eigenvalue, energy and force errors of a trained NNH model → evaluation.json + PNG figures."""
    from fastqmd.config import check_output_dir
    from fastqmd.errors import InputError
    from fastqmd.nnh.evaluate import evaluate_files

    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda requested but CUDA is not available")
    out = check_output_dir(output or model.with_name(model.stem + "_eval"))
    from fastqmd.mlip.kind import is_mlip_file

    if is_mlip_file(model):  # an energy MLIP (model.kind bp / equivariant): E and F errors only
        _evaluate_mlip(model, dataset, out, device, bands, subset)
        return
    if bands is not None:
        from fastqmd.nnh.bands import parse_crystal

        parse_crystal(bands)  # fail on a bad spec before the evaluation runs
    keys = subset_keys(model, subset) if subset is not None else None
    m, files = evaluate_files(model, dataset, out, device=device, bands=bands, keys=keys)
    f = m["forces_eV_per_A"]
    typer.echo(f"evaluate: {m['n_samples']} samples, H MAE {m['H_mae_eV']:.3g} eV ({m['H_mae_uEh']:.3g} μEh), "
               f"eigenvalue MAE {m['eigenvalue_mae_eV']['all']:.3g} eV"
               + (f", force MAE {f['mae']:.3g} eV/Å" if f else "")
               + (f", band MAE {1e3 * m['bands']['mae_eV']:.3g} meV" if "bands" in m else "")
               + f" -> {', '.join(str(p) for p in files)}")


def _evaluate_mlip(model: Path, dataset: Path, out: Path, device: str, bands, subset) -> None:
    import json

    from fastqmd.errors import InputError
    from fastqmd.mlip.kind import evaluate_mlip

    if bands is not None:
        raise InputError("--bands needs an NNH model (an energy MLIP has no Hamiltonian)")
    keys = subset_keys(model, subset) if subset is not None else None
    m = evaluate_mlip(model, dataset, keys, device)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(m, indent=1))
    typer.echo(f"evaluate: {m['n_samples']} samples, E MAE {m['E_mae_meV_atom']:.3g} meV/atom"
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
