"""`fastqmd md CONFIG.yaml`: parse the config, run (or resume) the MD, print where the files are.

Bad input → `InputError` (exit 2, nothing of an earlier run changed); a blow-up → `MDBlowUp`, a
`CalculationFailed` (exit 3, last good frame saved); both mapped in `fastqmd.cli.main`."""

from __future__ import annotations

from pathlib import Path

import typer

from fastqmd.cli_options import at_least


def md(
    config: Path = typer.Argument(..., help="MD config (YAML), see fastqmd.md.config"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start afresh even if a checkpoint exists "
                                   "(the old run is replaced only once the new one is valid)"),
    steps: int = typer.Option(None, "--steps", callback=at_least(1), help="override the config's number of steps"),
) -> None:
    """Run molecular dynamics (NVE, Nosé–Hoover, Langevin, Berendsen) with EMT, a reference engine or any
    ASE calculator; kill and rerun to resume from the last checkpoint."""
    from fastqmd.config import load_config
    from fastqmd.md.config import MDConfig
    from fastqmd.md.run import run_md

    cfg = load_config(MDConfig, config)
    if steps is not None:
        cfg = cfg.model_copy(update={"steps": steps})
    s = run_md(cfg, overwrite=overwrite)
    how = f"resumed at step {s.resumed_from}" if s.resumed_from is not None else "new run"
    typer.echo(f"md: {s.steps_done} steps ({how}), {s.s_per_step:.3g} s/step, {s.ns_per_day:.3g} ns/day -> {s.out_dir}")
    if s.domain is not None:
        d = s.domain
        above = "never above" if d["first_step_above"] is None else f"first above at step {d['first_step_above']}"
        typer.echo(f"md: training domain: max extrapolation score {float(d['max_score']):.3g} at step {d['max_step']} "
                   f"({d['n_checks']} checks, threshold {d['threshold']:g}, {above}) -> {s.out_dir / 'domain.json'}")


def register(app: typer.Typer) -> None:
    app.command("md")(md)
