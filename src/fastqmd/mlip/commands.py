"""`fastqmd mlip …`: machine-learned interatomic potentials on the command line.

`fastqmd mlip evaluate SPEC DATASET [-o DIR]`: a universal MLIP ("sevenn:7net-0", "chgnet:0.3.0", …) scored on a
fastqmd dataset → DIR/evaluation.json (`fastqmd.mlip.universal.evaluate_universal`).
`fastqmd mlip models`: the checkpoints that load offline.
Heavy modules (torch, sevenn, chgnet) are imported inside the commands only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

mlip_app = typer.Typer(help="Machine-learned interatomic potentials: universal models offline.",
                       no_args_is_help=True)


@mlip_app.command("evaluate")
def evaluate_cmd(
    spec: str = typer.Argument(..., help="KIND[:MODEL], KIND sevenn or chgnet, e.g. sevenn:7net-0, chgnet:0.3.0, "
                               "sevenn:path/to/checkpoint.pth"),
    dataset: Path = typer.Argument(..., help="dataset (.h5)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="output folder (default: DATASET_KIND-MODEL_eval/ beside DATASET)"),
    modal: Optional[str] = typer.Option(None, "--modal", help="fidelity of a multi-fidelity SevenNet (7net-mf-0: "
                                        "PBE or R2SCAN)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
) -> None:
    """Energy (raw and after a fitted per-element offset) and force errors of a universal MLIP on a dataset."""
    from fastqmd.config import check_output_dir
    from fastqmd.data.store import read_header
    from fastqmd.errors import InputError
    from fastqmd.mlip.universal import evaluate_universal, load_universal, parse_spec

    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {device!r}")
    kind, model = parse_spec(spec)
    if not dataset.is_file():
        raise InputError(f"dataset not found: {dataset}")
    read_header(dataset)  # not a dataset: fail before loading a model
    slug = f"{kind}-{Path(model).stem if Path(model).is_file() else model}"
    out = check_output_dir(output or dataset.with_name(f"{dataset.stem}_{slug}_eval"))
    m = evaluate_universal(load_universal(kind, model, device=device, modal=modal), dataset)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(m, indent=1))
    f, e = m["forces_eV_per_A"], m["energy_per_atom_eV"]
    typer.echo(f"mlip evaluate: {m['model']} on {m['n_samples']} samples"
               + (f", force MAE {1e3 * f['mae']:.4g} meV/Å" if f else "")
               + f", energy MAE {1e3 * e['mae']:.4g} meV/atom raw, "
               f"{m['energy_mae_meV_per_atom_offset']:.4g} meV/atom after the per-element offset"
               f" -> {out / 'evaluation.json'}")


@mlip_app.command("models")
def models_cmd() -> None:
    """The universal MLIP checkpoints installed with their wheels (these load with no network)."""
    from fastqmd.mlip.universal import KINDS, available_models

    for kind in KINDS:
        for name, path in available_models(kind).items():
            typer.echo(f"{kind}:{name}  {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(mlip_app, name="mlip")
