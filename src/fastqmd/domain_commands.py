"""`fastqmd domain …`: the training-domain (extrapolation) indicator of `fastqmd.domain` on the command line.

`fastqmd domain fit DATA [-o DOMAIN.pt] [--split-of RUN_DIR_OR_MODEL] [--cutoff 5.0]`: a domain from a fastqmd
dataset (its ok samples, or the "train" keys of a training run's split.json) or any ASE-readable file.
`fastqmd domain score DOMAIN.pt STRUCTURES [-o SCORES.json] [--threshold 1.0]`: the extrapolation score of every
frame (1 ≈ the edge of the training data): max score, fraction of frames above the threshold.
Bad input (missing or foreign file, data without structures, an element the domain has not seen) → one line,
exit 2, nothing written. torch is imported inside the commands only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fastqmd.cli_options import above, at_least

domain_app = typer.Typer(help="Training-domain indicator: fit it on training data, score structures against it.",
                         no_args_is_help=True)


@domain_app.command("fit")
def fit_cmd(
    data: Path = typer.Argument(..., help="training data: a fastqmd dataset (.h5) or any ASE-readable file"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="domain file (default: DATA_domain.pt "
                                          "beside DATA)"),
    split_of: Optional[Path] = typer.Option(None, "--split-of", help="a `fastqmd train` run folder or its model "
                                            "file: fit on its split.json train keys only"),
    cutoff: float = typer.Option(5.0, "--cutoff", callback=above(0), help="descriptor cutoff (Å)"),
    max_points: int = typer.Option(2000, "--max-points", callback=at_least(2),
                                   help="reference points kept per element (seeded subsample)"),
    quantile: float = typer.Option(0.99, "--quantile", callback=above(0),
                                   help="quantile of the leave-one-out distances that defines score 1"),
    seed: int = typer.Option(0, "--seed", help="subsampling seed"),
) -> None:
    """Fit the training domain of DATA: per-element standardized symmetry-function descriptors and their scale."""
    from fastqmd.config import check_output_file
    from fastqmd.domain import fit_domain, read_frames, save_domain, train_keys
    from fastqmd.errors import InputError

    if quantile > 1:
        raise InputError(f"--quantile must be ≤ 1, got {quantile:g}")
    out = check_output_file(output or data.with_name(f"{data.stem}_domain.pt"), None,
                            inputs=tuple(p for p in (data, split_of) if p is not None))
    keys = train_keys(split_of) if split_of is not None else None
    dom = fit_domain(read_frames(data, keys), cutoff=cutoff, max_points_per_element=max_points, quantile=quantile,
                     seed=seed, source=str(data) + (f" (train split of {split_of})" if split_of else ""))
    save_domain(dom, out)
    typer.echo(f"domain fit: {dom.summary()} -> {out}")


@domain_app.command("score")
def score_cmd(
    domain: Path = typer.Argument(..., help="domain file of `fastqmd domain fit`"),
    structures: Path = typer.Argument(..., help="structures: any ASE-readable file (all frames) or a dataset"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write the per-frame scores as JSON"),
    threshold: float = typer.Option(1.0, "--threshold", callback=above(0), help="score counted as outside"),
) -> None:
    """Score every frame of STRUCTURES against DOMAIN: s = max over atoms of the nearest-training distance / d_ref."""
    from fastqmd.config import check_output_file
    from fastqmd.domain import load_domain, read_frames, score, unseen_elements
    from fastqmd.errors import InputError

    if output is not None:
        check_output_file(output, None, inputs=(domain, structures))
    dom = load_domain(domain)
    frames = read_frames(structures)
    missing = unseen_elements(dom, {int(z) for a in frames for z in a.numbers})
    if missing:
        raise InputError(f"{structures}: element(s) {', '.join(missing)} not in the domain (fitted on "
                         f"{', '.join(dom.elements)}); its score would be infinite")
    rows = []
    for k, a in enumerate(frames):
        s = score(dom, a)
        rows.append({"frame": k, "score": s.score, "atom": s.atom, "element": s.element,
                     "n_features_outside_range": int(s.outside_range[s.atom])})
    best = max(rows, key=lambda r: r["score"])
    n_above = sum(r["score"] > threshold for r in rows)
    if output is not None:
        output.write_text(json.dumps({"domain": str(domain), "structures": str(structures), "threshold": threshold,
                                      "n_frames": len(rows), "max_score": best["score"], "max_frame": best["frame"],
                                      "fraction_above": n_above / len(rows), "frames": rows}, indent=1))
    typer.echo(f"domain score: {len(rows)} frames, max score {best['score']:.3g} (frame {best['frame']}, atom "
               f"{best['atom']} {best['element']}), {n_above}/{len(rows)} = {n_above / len(rows):.1%} above "
               f"{threshold:g}" + (f" -> {output}" if output is not None else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(domain_app, name="domain")
