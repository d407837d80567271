"""`fastqmd analyze TRAJ` and `fastqmd compare REF TRAJ [TRAJ ...]`: JSON numbers + one PNG figure.

Every trajectory is read and checked (finite frames, one system, the same system as the reference) and every
output path checked (its folder exists, it is not an input) before anything is computed or written."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fastqmd.cli_options import above, at_least


def _options(rmax, at_fs, from_fs, adf_cutoff, sigma, timestep):
    from fastqmd.analysis.compare import AnalysisOptions

    return AnalysisOptions(rdf_rmax_A=rmax, at_fs=at_fs, from_fs=from_fs, adf_cutoff_A=adf_cutoff,
                           dos_sigma_eV=sigma, timestep_fs=timestep)


def _read(path: Path):
    """The frames of a trajectory, validated (`validate_frames`)."""
    from fastqmd.analysis.compare import validate_frames
    from fastqmd.md.trajectory import read_trajectory

    frames = read_trajectory(path)
    validate_frames(frames, str(path))
    return frames


def _analyze(path: Path, frames, opts):
    from fastqmd.analysis.compare import analyze
    from fastqmd.errors import InputError

    try:
        return analyze(frames, opts)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


def _outputs(prefix: str, inputs) -> tuple[Path, Path]:
    """The JSON and PNG files of an output prefix (derived files: replaced when they exist)."""
    from fastqmd.config import check_output_file

    return tuple(check_output_file(f"{prefix}{ext}", inputs=tuple(inputs)) for ext in (".json", ".png"))


RMAX = typer.Option(6.0, "--rmax", callback=above(0), help="RDF range (Å)")
AT = typer.Option(None, "--at-fs", callback=at_least(0), help="RDF/ADF/DOS at this time only (the NNH study: 500)")
FROM = typer.Option(0.0, "--from-fs", callback=at_least(0),
                    help="else average RDF/ADF/DOS over frames from this time on")
CUT = typer.Option(None, "--adf-cutoff", callback=above(0),
                   help="ADF neighbour cutoff (Å); default 1.25 × shortest distance")
SIG = typer.Option(0.1, "--sigma", callback=above(0), help="Gaussian broadening of the electronic DOS (eV)")
DT = typer.Option(None, "--timestep-fs", callback=above(0), help="time between frames, for files without time_fs")


def analyze_cmd(
    traj: Path = typer.Argument(..., help="trajectory (extxyz or any ASE-readable file)"),
    out: Path = typer.Option(None, "--out", "-o", help="output prefix (default: next to TRAJ)"),
    rmax: float = RMAX, at_fs: float = AT, from_fs: float = FROM, adf_cutoff: float = CUT,
    sigma: float = SIG, timestep_fs: float = DT,
) -> None:
    """Analyse one trajectory: T, MSD, RDF, ADF, VACF/VDOS, electronic DOS, bonds → JSON + PNG."""
    from fastqmd.analysis.compare import summary, to_json
    from fastqmd.analysis.plots import plot_analyses

    frames = _read(traj)
    js, png = _outputs(f"{out or traj.with_suffix('')}_analysis", [traj])
    a = _analyze(traj, frames, _options(rmax, at_fs, from_fs, adf_cutoff, sigma, timestep_fs))
    js.write_text(json.dumps(to_json({"summary": summary(a), "data": a}), indent=1))
    png = plot_analyses([a], [_label(traj)], png)
    s = summary(a)
    typer.echo(f"analyze: T = {s['T_mean_K']:.1f} ± {s['T_std_K']:.1f} K, MSD(end) = {s['msd_end_A2']:.4g} Å² "
               f"-> {js}, {png}")


def compare_cmd(
    ref: Path = typer.Argument(..., help="reference trajectory (solid red)"),
    trajs: list[Path] = typer.Argument(..., help="surrogate trajectories (dashed black, ...)"),
    out: Path = typer.Option(Path("compare"), "--out", "-o", help="output prefix (its folder must exist)"),
    rmax: float = RMAX, at_fs: float = AT, from_fs: float = FROM, adf_cutoff: float = CUT,
    sigma: float = SIG, timestep_fs: float = DT,
) -> None:
    """Compare surrogate trajectories with a reference (the same system): agreement metrics (JSON) and the
    comparison figure."""
    from fastqmd.analysis.compare import check_same_system, compare, default_adf_cutoff, to_json
    from fastqmd.analysis.plots import plot_analyses

    paths = [ref, *trajs]
    frames = [_read(p) for p in paths]
    for p, f in zip(trajs, frames[1:]):
        check_same_system(frames[0], f, str(ref), str(p))
    js, png = _outputs(str(out), paths)
    if adf_cutoff is None:  # one cutoff for all, from the reference
        adf_cutoff = default_adf_cutoff(frames[0][0])
    opts = _options(rmax, at_fs, from_fs, adf_cutoff, sigma, timestep_fs)
    analyses = [_analyze(p, f, opts) for p, f in zip(paths, frames)]
    metrics = {str(p): compare(analyses[0], a) for p, a in zip(trajs, analyses[1:])}
    js.write_text(json.dumps(to_json({"reference": str(ref), "metrics": metrics}), indent=1))
    names = [_label(p) for p in paths]
    png = plot_analyses(analyses, [f"{names[0]} (reference)"] + names[1:], png)
    for p, m in metrics.items():
        parts = [f"{k} = {m[k]:.4f}" for k in ("rdf_overlap", "adf_overlap", "msd_ratio") if k in m]
        typer.echo(f"compare {p}: " + ", ".join(parts))
    typer.echo(f"-> {js}, {png}")


def _label(p: Path) -> str:
    """Legend label: the run directory for fastqmd's trajectory.extxyz, else the file stem."""
    return p.parent.name if p.stem == "trajectory" and p.parent.name else p.stem


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_cmd)
    app.command("compare")(compare_cmd)
