"""CLI: `fastqmd rsdft single STRUCTURE` — one real-space KS calculation: energy, eigenvalues, forces, timing.

The structure gets the checks of `generate` and `md` (`fastqmd.structures.validate_atoms`: atoms closer than
0.5 Å, NaN coordinates, a zero-volume cell → exit 2); an SCF that does not converge is a `CalculationFailed`
(exit 3, raised by the solver)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from fastqmd.cli_options import above, at_least

rsdft_app = typer.Typer(help="High-fidelity real-space finite-difference Kohn–Sham DFT.", no_args_is_help=True)


def single_cmd(
    structure: Path = typer.Argument(..., help="Structure file readable by ASE (xyz, extxyz, cif, POSCAR, ...)."),
    points: int = typer.Option(64, "--points", callback=at_least(8), help="Grid points per axis."),
    fd_order: int = typer.Option(4, "--fd-order", help="FD Laplacian order: 2, 4, 6 or 8."),
    box_ang: Optional[float] = typer.Option(None, "--box-ang", callback=above(0),
                                            help="Cubic box edge in Å (default: the structure's cell)."),
    centered: bool = typer.Option(False, "--centered", help="Grid on [−L/2, L/2)³ instead of [0, L)³."),
    isolated: bool = typer.Option(False, "--isolated", help="Free-space boundary conditions (default periodic)."),
    xc: str = typer.Option("teter93", "--xc", help="teter93, pz81 or pbe."),
    eigensolver: str = typer.Option("lobpcg", "--eigensolver", help="lobpcg or abpg."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run one SCF and print the free energy, KS eigenvalues, forces and wall time."""
    import numpy as np

    from fastqmd.errors import InputError
    from fastqmd.structures import read_structures, validate_atoms

    atoms = read_structures(structure, "-1")[0]  # the last frame, as ase.io.read
    if fd_order not in (2, 4, 6, 8):
        raise InputError(f"--fd-order must be 2, 4, 6 or 8, got {fd_order}")
    if xc not in ("teter93", "pz81", "pbe") or eigensolver not in ("lobpcg", "abpg"):
        raise InputError("--xc must be teter93/pz81/pbe and --eigensolver lobpcg/abpg")
    L = box_ang if box_ang is not None else None
    if L is None and not atoms.cell.any():
        raise InputError("the structure has no cell: pass --box-ang")
    solved = atoms.copy()  # the system as the solver sees it: in the --box-ang box, periodic unless --isolated
    if L is not None:
        solved.cell = np.eye(3) * L
    solved.pbc = not isolated
    validate_atoms(solved, str(structure))  # the structure checks of `generate` and `md`
    origin = None
    if centered:
        Lv = np.full(3, L) if L is not None else np.diag(atoms.cell.array)
        origin = tuple(-Lv / 2)
    from fastqmd.dft.calculator import RSDFTCalculator

    calc = RSDFTCalculator(grid_points=points, fd_order=fd_order, box_ang=L, origin_ang=origin,
                           boundary="isolated" if isolated else "periodic", xc=xc, eigensolver=eigensolver)
    atoms.calc = calc
    t0 = time.perf_counter()
    E = atoms.get_potential_energy()
    F = atoms.get_forces()
    wall = time.perf_counter() - t0
    r = calc.results
    out = {"energy_eV": E, "energy_Ha": calc.scf_result.free_energy, "eigenvalues_eV": r["eigenvalues"].tolist(),
           "occupations": calc.scf_result.occupations.tolist(), "forces_eV_per_ang": F.tolist(),
           "scf_iterations": r["scf_iterations"], "converged": r["scf_converged"], "wall_s": wall,
           "grid": {"shape": calc.scf_result.grid.shape, "spacing_bohr": calc.scf_result.grid.spacing}}
    if as_json:
        typer.echo(json.dumps(out, indent=1))
        return
    typer.echo(f"free energy  {E:.6f} eV  ({out['energy_Ha']:.8f} Ha)  SCF {out['scf_iterations']} it, "
               f"{'converged' if out['converged'] else 'NOT converged'}, {wall:.1f} s")
    typer.echo("eigenvalues (eV) / occupations: " + "  ".join(
        f"{e:.4f}/{o:.2f}" for e, o in zip(out["eigenvalues_eV"], out["occupations"])))
    typer.echo("forces (eV/Å):")
    for s, f in zip(atoms.get_chemical_symbols(), F):
        typer.echo(f"  {s:2s} {f[0]: .6f} {f[1]: .6f} {f[2]: .6f}")


def register(app: typer.Typer) -> None:
    rsdft_app.command("single")(single_cmd)
    app.add_typer(rsdft_app, name="rsdft")
