"""CLI: `fastqmd mor snapshots CONFIG.yaml` (offline Hi-Fi solves), `fastqmd mor basis SNAPSHOTS -o BASIS`
(thin SVD, rank by 1 − ε, JSON summary with both rank criteria, singular-value plot) and `fastqmd mor test BASIS
TESTSET -o MAP.json` (the accuracy map vs Hi-Fi with the rank sweep, resumable; `fastqmd.mor.accuracy`).

Only typer is imported at start-up; numpy, h5py, the solver and matplotlib inside the commands. Bad input (a
missing or invalid config, an unknown molecule, an existing output without --overwrite, a corrupt snapshot file)
ends as one line, exit 2, nothing written; an SCF that does not converge exits 3 with the finished geometries kept
in the journal (rerun to resume)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fastqmd.cli_options import above

mor_app = typer.Typer(help="Reduced-order model (MOR-QMD) of the real-space solver: snapshots, basis, test, hyper.",
                      no_args_is_help=True)


def snapshots_cmd(
    config: Path = typer.Argument(..., help="Snapshots config (YAML): sampling, solver, output, chains, workers."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (once the new run is done)."),
    quiet: bool = typer.Option(False, "--quiet", help="No per-geometry progress lines."),
) -> None:
    """Hi-Fi SCF solves over the config's geometry grid, warm-started along it, into one HDF5 file (resumable)."""
    from fastqmd.config import load_config
    from fastqmd.mor.snapshots import SnapshotsConfig, generate_snapshots

    cfg = load_config(SnapshotsConfig, config)
    r = generate_snapshots(cfg, overwrite=overwrite, progress=not quiet)
    typer.echo(f"{r['output']}: {r['n_geometries']} geometries ({r['solved']} solved now, {r['already_done']} "
               f"resumed) in {r['chains']} chain(s) on {r['ran_on']}, {r['wall_s']:.1f} s")


def basis_cmd(
    snapshots: Path = typer.Argument(..., help="Snapshot file of `fastqmd mor snapshots`."),
    output: Path = typer.Option(..., "-o", "--output", help="Basis file to write (HDF5); also OUTPUT.json and .png."),
    epsilon: float = typer.Option(1e-4, "--epsilon", callback=above(0), help="Rank: captured fraction > 1 − ε."),
    criterion: str = typer.Option("sigma", "--criterion", help="sigma (Σσ, libROM < 2025) or sigma2 (Σσ²)."),
    states: str = typer.Option("occupied", "--states", help="occupied (the study: 4 per water) or all stored."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing basis file."),
) -> None:
    """Thin SVD of the snapshot orbitals → reduced basis; prints both ranks beside the study's 34."""
    from fastqmd.atomic import replace_durably
    from fastqmd.config import check_output_file
    from fastqmd.atomic import temp_name as _temp_name
    from fastqmd.errors import InputError
    from fastqmd.mor.basis import basis_from_snapshots, plot_singular_values, rank_summary, save_basis

    if criterion not in ("sigma", "sigma2"):
        raise InputError(f"--criterion must be sigma or sigma2, got {criterion!r}")
    if states not in ("occupied", "all"):
        raise InputError(f"--states must be occupied or all, got {states!r}")
    if not epsilon < 1:
        raise InputError(f"--epsilon must be < 1, got {epsilon:g}")
    out = check_output_file(output, overwrite=overwrite, inputs=(snapshots,))
    summary_path, plot_path = out.with_suffix(".json"), out.with_suffix(".png")
    for p in (summary_path, plot_path):
        check_output_file(p, overwrite=None, inputs=(snapshots,))
    basis = basis_from_snapshots(snapshots, epsilon, criterion, states)
    save_basis(out, basis)
    g, n_geom = basis.grid, len(basis.extras["training_geometries_bohr"])
    summary = {"basis": str(out), "snapshots": str(snapshots), "states": states, "criterion": criterion,
               "rank": basis.rank, "energy_fraction": basis.energy_fraction, "n_geometries": n_geom,
               **rank_summary(basis.singular_values, epsilon), "grid": list(g.shape), "spacing_bohr": g.spacing[0],
               "fd_order": g.fd_order, "filter_pseudo": basis.model.filter_pseudo,
               "rank_sweep": [rank_summary(basis.singular_values, e) for e in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)],
               "singular_values": basis.singular_values.tolist()}
    tmp = _temp_name(summary_path)
    tmp.write_text(json.dumps(summary, indent=1))
    replace_durably(tmp, summary_path)
    plot_singular_values(basis.singular_values, plot_path, epsilon,
                         f"{n_geom} geometries × {states} states, {g.shape[0]}³ FD{g.fd_order}")
    typer.echo(f"{out}: rank {basis.rank} ({criterion}, 1 − ε = {1 - epsilon:g}) of {basis.n_snapshots} snapshots; "
               f"Σσ rank {summary['rank_sigma']}, Σσ² rank {summary['rank_sigma2']} (study: {summary['study_rank']})")


def test_cmd(
    basis: Path = typer.Argument(..., help="Basis file of `fastqmd mor basis`."),
    testset: Path = typer.Argument(..., help="Hi-Fi test set: a `fastqmd mor snapshots` file (orbitals not needed)."),
    output: Path = typer.Option(..., "-o", "--output", help="Accuracy map (JSON); the histograms go to OUTPUT.png."),
    sweep: str = typer.Option("1e-2,1e-3,1e-4,1e-5,1e-6", "--sweep",
                              help="ε of the rank sweep (comma-separated); ranks above the basis' are skipped."),
    epsilon: float = typer.Option(None, "--epsilon", callback=above(0),
                                  help="Headline rank by this ε (a truncation of the basis); default the basis' rank."),
    sweep_every: int = typer.Option(1, "--sweep-every", callback=above(0),
                                    help="Run the sweep's other ranks on every N-th geometry (the headline on all)."),
    tol: float = typer.Option(1e-9, "--tol", callback=above(0), help="Online solver tolerance on |F'(0)| (Ha)."),
    hyper: Path = typer.Option(None, "--hyper", help="Map the grid-free step of this `fastqmd mor hyper` file "
                                                     "(headline rank only)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing map (and a foreign journal)."),
    quiet: bool = typer.Option(False, "--quiet", help="No per-geometry progress lines."),
) -> None:
    """MOR vs Hi-Fi on every test geometry: energy and per-H force errors, reproductive vs predictive, vs rank."""
    from fastqmd.atomic import replace_durably
    from fastqmd.atomic import temp_name as _temp_name
    from fastqmd.config import check_output_file
    from fastqmd.data.generate import output_lock
    from fastqmd.errors import InputError
    from fastqmd.mor.accuracy import accuracy_map, plot_map
    from fastqmd.mor.basis import load_basis
    from fastqmd.mor.snapshots import Snapshots

    try:
        eps = [float(x) for x in sweep.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--sweep must be comma-separated numbers, got {sweep!r}") from None
    if any(not 0 < e < 1 for e in eps):
        raise InputError(f"--sweep values must lie in (0, 1), got {sweep!r}")
    if epsilon is not None and not epsilon < 1:
        raise InputError(f"--epsilon must be < 1, got {epsilon:g}")
    inputs = (basis, testset) if hyper is None else (basis, testset, hyper)
    out = check_output_file(output, overwrite=overwrite, inputs=inputs)
    plot_path = out.with_suffix(".png")
    check_output_file(plot_path, overwrite=None, inputs=inputs)
    b, ts = load_basis(basis), Snapshots(testset)

    def progress(k, e, i, n):
        if not quiet:
            typer.echo(f"[rank {k} {i}/{n}] geometry {e.index} ({'rep' if e.reproductive else 'pred'})  "
                       f"dE {e.energy_error:.2e} Ha  max dF {max(e.force_errors):.2e} Ha/Bohr  {e.iterations} it  "
                       f"{e.wall_s:.2f} s")

    with output_lock(out):
        summary = accuracy_map(b, ts, out, eps, tol=tol, overwrite=overwrite, progress=progress, epsilon=epsilon,
                               sweep_every=sweep_every, hyper=hyper)
        tmp = _temp_name(out)
        tmp.write_text(json.dumps(summary, indent=1))
        plot_map(summary, plot_path)
        replace_durably(tmp, out)
        journal = out.with_name(out.name + ".journal.jsonl")
        journal.unlink(missing_ok=True)
    p, r = summary["predictive"], summary["reproductive"]
    typer.echo(f"{out}: rank {summary['rank']}, {summary['n_geometries']} geometries; predictive ({p['n']}) max dF "
               f"{p.get('max_force_error_Ha_per_Bohr', float('nan')):.2e} Ha/Bohr, max dE "
               f"{p.get('max_energy_error_Ha', float('nan')):.2e} Ha; reproductive ({r['n']}) max dF "
               f"{r.get('max_force_error_Ha_per_Bohr', float('nan')):.2e} (target 5e-4 Ha/Bohr, 1e-4 Ha)")


def hyper_cmd(
    basis: Path = typer.Argument(..., help="Basis file of `fastqmd mor basis` (it lists its training geometries)."),
    output: Path = typer.Option(..., "-o", "--output", help="Hyper-reduction file to write (HDF5)."),
    table_spacing: float = typer.Option(None, "--table-spacing", callback=above(0),
                                        help="Spacing of the frame atoms' matrix tables (Bohr); default h/2."),
    table_margin: float = typer.Option(0.3, "--table-margin", callback=above(0),
                                       help="Tables cover the training positions ± this (Bohr); MD at 300 K: 0.3."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Grid-free online step: Hartree pair tensor, per-atom ionic matrix tables, XC expansion (docs/MOR_hyper.md)."""
    import time

    from fastqmd.config import check_output_file
    from fastqmd.mor.basis import load_basis
    from fastqmd.mor.hyper import hyper_for_basis, save_hyper

    out = check_output_file(output, overwrite=overwrite, inputs=(basis,))
    b = load_basis(basis)
    t0 = time.perf_counter()
    hr = hyper_for_basis(b, table_spacing, table_margin, verbose=True)
    save_hyper(out, hr, basis_source=str(basis))
    typer.echo(f"{out}: hyper-reduction of rank {hr.k} ({b.source}), tables {[t.values.shape[:2] for t in hr.tables]}"
               f", {time.perf_counter() - t0:.1f} s; use it as `potential: {{kind: mor, basis: …, hyper: {out}}}`")


def register(app: typer.Typer) -> None:
    mor_app.command("snapshots")(snapshots_cmd)
    mor_app.command("basis")(basis_cmd)
    mor_app.command("test")(test_cmd)
    mor_app.command("hyper")(hyper_cmd)
    app.add_typer(mor_app, name="mor")
