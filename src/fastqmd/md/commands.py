"""`fastqmd md CONFIG.yaml`: parse the config, run (or resume) the MD, print where the files are."""

from __future__ import annotations

from pathlib import Path

import typer


def md(
    config: Path = typer.Argument(..., help="MD config (YAML), see fastqmd.md.config"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start afresh even if a checkpoint exists"),
    steps: int = typer.Option(None, "--steps", min=1, help="override the config's number of steps"),
) -> None:
    """Run molecular dynamics (NVE, Nosé–Hoover, Langevin, Berendsen) with EMT, a reference engine or any
    ASE calculator; kill and rerun to resume from the last checkpoint."""
    from fastqmd.config import load_config
    from fastqmd.md.config import MDConfig
    from fastqmd.md.run import MDBlowUp, run_md

    cfg = load_config(MDConfig, config)
    if steps is not None:
        cfg = cfg.model_copy(update={"steps": steps})
    try:
        s = run_md(cfg, overwrite=overwrite)
    except MDBlowUp as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    how = f"resumed at step {s.resumed_from}" if s.resumed_from is not None else "new run"
    typer.echo(f"md: {s.steps_done} steps ({how}), {s.s_per_step:.3g} s/step, {s.ns_per_day:.3g} ns/day -> {s.out_dir}")


def register(app: typer.Typer) -> None:
    app.command("md")(md)
