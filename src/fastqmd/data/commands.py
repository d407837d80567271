"""CLI: `fastqmd generate CONFIG.yaml`, `fastqmd dataset info FILE`, `fastqmd dataset export FILE`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fastqmd.cli_options import at_least

dataset_app = typer.Typer(help="Inspect and export reference datasets.", no_args_is_help=True)


def generate_cmd(
    config: Path = typer.Argument(..., help="YAML config: structures, engine, output, workers."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Address of an existing Dask scheduler (e.g. tcp://10.0.0.5:8786) "
        "instead of a LocalCluster on 127.0.0.1."),
    workers: Optional[int] = typer.Option(None, "--workers", callback=at_least(0),
                                          help="Override the config's worker count."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Recompute samples recorded as failed."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    dashboard: bool = typer.Option(False, "--dashboard", help="Serve the Dask dashboard on 127.0.0.1:8787 "
                                   "(only when a LocalCluster is started)."),
) -> None:
    """Label structures with a reference engine into an HDF5 dataset (parallel on Dask, resumable)."""
    from fastqmd.config import load_config
    from fastqmd.data.generate import GenerateConfig, generate

    cfg = load_config(GenerateConfig, config)
    if workers is not None:  # validated by the config's own rule (one line, exit 2, before any work)
        cfg = GenerateConfig.model_validate({**cfg.model_dump(), "workers": workers})
    rep = generate(cfg, scheduler=scheduler, retry_failed=retry_failed, progress=not quiet,
                   dashboard=dashboard)
    typer.echo(
        f"{cfg.output}: {rep.requested} structures, {rep.already_done} already done, "
        f"{rep.computed} computed ({rep.failed} failed) in {rep.wall_time_s:.1f} s "
        f"(engine time {rep.engine_time_s:.1f} s)"
    )


def info_cmd(
    file: Path = typer.Argument(..., help="Dataset (.h5) written by `fastqmd generate`."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Counts, elements, basis, energy/force statistics and failed samples of a dataset."""
    from fastqmd.data.info import summarize

    s = summarize(file)
    if as_json:
        typer.echo(json.dumps(s, indent=1))
        return
    _print_summary(s)


def export_cmd(
    file: Path = typer.Argument(..., help="Dataset (.h5)."),
    format: str = typer.Option("extxyz", "--format", help="Output format (extxyz)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (default: FILE.extxyz)."),
    include_failed: bool = typer.Option(False, "--include-failed", help="Also write failed structures."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Export structures with energies and forces (e.g. for other MLIP codes). Never writes onto the dataset;
    an existing output file is replaced only with --overwrite."""
    from fastqmd.config import check_output_file
    from fastqmd.data.info import export_extxyz
    from fastqmd.data.store import Dataset
    from fastqmd.errors import InputError

    if format != "extxyz":
        raise InputError(f"unsupported export format '{format}' (supported: extxyz)")
    Dataset(file).close()  # a missing or foreign file is reported before the output is looked at
    out = check_output_file(output or file.with_suffix(".extxyz"), overwrite=overwrite, inputs=(file,))
    n = export_extxyz(file, out, include_failed)
    typer.echo(f"wrote {n} frames to {out}")


def _print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    c.print(f"[bold]{s['path']}[/]  engine [cyan]{s['engine']}[/]  {json.dumps(s['settings'], sort_keys=True)}")
    n = s["samples"]
    c.print(f"samples: {n['total']} ({n['ok']} ok, {n['failed']} failed); elements: {' '.join(s['elements'])}")
    c.print("basis: " + "; ".join(f"{el}: l={v['shells_l']} ({v['n_orbitals']} orbitals, "
                                  f"{s['valence_electrons'].get(el, '?')} valence electrons)"
                                  for el, v in s["basis"].items()))
    t = Table("quantity", "mean", "std", "min", "max")
    for key, label in [("atoms_per_sample", "atoms/sample"), ("kpoints_per_sample", "k-points/sample"),
                       ("energy_eV", "energy (eV)"), ("energy_per_atom_eV", "energy/atom (eV)"),
                       ("force_component_eV_per_A", "force component (eV/Å)"),
                       ("force_norm_eV_per_A", "|force| (eV/Å)"), ("min_distance_A", "nearest distance (Å)"),
                       ("wall_time_s_per_sample", "wall time/sample (s)")]:
        v = s[key]
        if v:
            t.add_row(label, *(f"{v[k]:.6g}" for k in ("mean", "std", "min", "max")))
    c.print(t)
    for fl in s["failed"]:
        c.print(f"[yellow]failed sample {fl['index']} ({fl['source']}): {fl['error']}")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
    dataset_app.command("info")(info_cmd)
    dataset_app.command("export")(export_cmd)
    app.add_typer(dataset_app, name="dataset")
