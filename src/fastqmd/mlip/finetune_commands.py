"""`fastqmd finetune CONFIG.yaml`: forgetting-aware fine-tuning of a pretrained MLIP (`fastqmd.mlip.finetune`).
torch and sevenn are imported inside the command only."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fastqmd.cli_options import at_least


def finetune_cmd(
    config: Path = typer.Argument(..., help="Fine-tuning config (YAML): pretrained (sevenn:7net-0 or a fastqmd "
                                  "MLIP model.pt), dataset, output, method (vanilla, lower_lr, layer_freezing, ewc, "
                                  "replay, reewc) and its blocks"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start afresh even if a checkpoint exists"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", callback=at_least(1), help="override max_steps"),
) -> None:
    """Fine-tune a pretrained MLIP on a dataset with EWC / replay / freezing against forgetting; kill and rerun to
    resume. Writes the trainer's run folder and finetune.json (errors before/after on both sets)."""
    from fastqmd.mlip.finetune import load_finetune_config

    cfg = load_finetune_config(config)
    if max_steps is not None:
        cfg = cfg.model_copy(update={"max_steps": max_steps})
    from fastqmd.mlip.finetune import finetune

    s = finetune(cfg, overwrite=overwrite)
    how = f"resumed at step {s['resumed_from']}" if s["resumed_from"] is not None else "new run"
    r = s.get("finetune") or {}
    extra = ""
    if r:
        ft, pre = r["ft_test"], r["pretraining_held_out"]
        extra = (f", fine-tuning test F MAE {ft['before'].get('F_mae_meV_A', float('nan')):.4g} → "
                 f"{ft['after'].get('F_mae_meV_A', float('nan')):.4g} meV/Å")
        if pre.get("after"):
            extra += (f", pretraining held-out F MAE {pre['before']['F_mae_meV_A']:.4g} → "
                      f"{pre['after']['F_mae_meV_A']:.4g} meV/Å")
    typer.echo(f"finetune ({cfg.method}): {s['steps']} steps ({how}) in {s['wall_time_s']:.1f} s{extra} "
               f"-> {cfg.output}/model.pt")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)
