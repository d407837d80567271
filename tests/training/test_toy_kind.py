"""The trainer is model-agnostic: a toy model kind (an MLP fitting y = sin x) plugs in through `ModelKind`
alone, and gets phases (a frozen body, an on-enter hook), EMA, validation, checkpoints and bit-for-bit resume
from `fastqmd.training` — the seam the MLIP kinds (issue 12) use."""

import json
from pathlib import Path

import torch

from fastqmd.atomic import atomic_torch_save
from fastqmd.training import Hook, Phase, TrainerSettings, fit


class ToySamples:
    def __init__(self, x: torch.Tensor, keys: list[str]):
        self.x, self.keys = x, keys

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        return self.x[i], torch.sin(self.x[i])

    def subset(self, indices):
        idx = list(indices)
        return ToySamples(self.x[idx], [self.keys[i] for i in idx])


class ToyConfig(TrainerSettings):
    warm_steps: int = 2  # phase "head": the body frozen


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(1, 8, dtype=torch.float64), torch.nn.Tanh())
        self.head = torch.nn.Linear(8, 1, dtype=torch.float64)

    def forward(self, x):
        return self.head(self.body(x[:, None]))[:, 0]


class ToyLoss(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def terms(self, batch):
        x = torch.stack([b[0] for b in batch])
        y = torch.stack([b[1] for b in batch])
        Ly = (self.model(x) - y) ** 2  # [B]
        L2 = sum((p**2).sum() for p in self.model.parameters()).expand_as(Ly)
        return torch.stack([Ly, L2], -1)  # [B, 2]

    def forward(self, batch, w):
        t = self.terms(batch)
        loss = (t @ torch.tensor(w, dtype=t.dtype)).mean()
        return loss, torch.cat([t.detach().sum(0), t.new_tensor([len(batch)])])


def zero_head_bias(ctx):
    with torch.no_grad():
        ctx.model.head.bias.zero_()
    return {"n_train": len(ctx.train)}


class ToyKind:
    name = "toy"
    checkpoint_format = "fastqmd-toy-checkpoint"
    terms = ("y", "l2")
    schedule_fields = ("warm_steps",)

    def check(self, cfg):
        pass

    def samples(self, cfg):
        x = torch.linspace(-2, 2, 24, dtype=torch.float64)
        return ToySamples(x, [f"{i:08d}" for i in range(len(x))])

    def build(self, cfg, train, device):
        return Toy()

    def phases(self, cfg):
        return [Phase("head", cfg.warm_steps, {"y": 1.0, "l2": 0.0}, frozen=("body",)),
                Phase("all", None, {"y": 1.0, "l2": 1e-4}, on_enter=(Hook("zero_head_bias", zero_head_bias,
                                                                           writes=("head.",)),))]

    def loss_module(self, cfg, model, train, device):
        return ToyLoss(model)

    def validate(self, lm, samples, weights):
        with torch.no_grad():
            m = lm.terms([samples[i] for i in range(len(samples))]).mean(0).tolist()
        return {"loss": sum(weights[t] * v for t, v in zip(self.terms, m)), "L_y": m[0], "L_l2": m[1]}

    def checkpoint_payload(self, model):
        return {"config": json.dumps({"hidden": 8})}

    def save_model(self, model, path, state=None):
        atomic_torch_save({"format": "toy-model", "state": state or model.state_dict()}, path)


def config(out: Path, **kw):
    base = dict(dataset="unused.h5", output=out, split=dict(val_fraction=0.25, test_fraction=0.125), lr=2e-2,
                max_steps=12, batch_size=4, eval_every=3, checkpoint_every=4, ema_decay=0.5, progress=False, seed=1)
    return ToyConfig(**{**base, **kw})


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_toy_kind_trains_with_phases_hooks_and_validation(tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "run"
    s = fit(ToyKind(), config(out), stop_after=2)
    body_2 = {k: v.clone() for k, v in torch.load(out / "checkpoint.pt", weights_only=True)["state"].items()}
    s = fit(ToyKind(), config(out))
    assert s["steps"] == 12 and s["resumed_from"] == 2 and set(s["test"]) == {"loss", "L_y", "L_l2"}
    lines = metrics(out)
    assert {"step": 2, "zero_head_bias": {"n_train": 15}} in lines  # the hook ran once, entering phase "all"
    steps = [r for r in lines if "grad_norm" in r]
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert steps[0]["L_l2"] > 0 and all(r["loss"] == r["L_y"] for r in steps[:2])  # phase "head": l2 weight 0
    assert steps[-1]["L_y"] < 0.5 * steps[0]["L_y"]
    first = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert first["format"] == "fastqmd-toy-checkpoint" and first["progress"]["step"] == 12
    torch.manual_seed(1)  # the trainer seeds torch with cfg.seed before build: the initial weights
    body_init = Toy().state_dict()  # the body is frozen through phase "head" (steps 0, 1)
    for k in ("body.0.weight", "body.0.bias"):
        assert torch.equal(body_2[k], body_init[k]), k


def test_toy_kind_resume_reproduces_the_uninterrupted_run(tmp_path):
    fit(ToyKind(), config(tmp_path / "ref"))
    fit(ToyKind(), config(tmp_path / "cut"), stop_after=5)  # last checkpoint at step 5 (end of this run)
    fit(ToyKind(), config(tmp_path / "cut"), stop_after=7)
    fit(ToyKind(), config(tmp_path / "cut"))
    assert (tmp_path / "ref" / "metrics.jsonl").read_bytes() == (tmp_path / "cut" / "metrics.jsonl").read_bytes()
    a = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["state"]
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)["state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_with_the_old_progress_dict_resumes(tmp_path):
    """Checkpoints written before `fastqmd.training` kept their counters under other names (plateau_scale,
    train_wall_s, rep_fitted): they resume into the same run."""
    kw = dict(schedule=dict(kind="plateau", plateau_patience=1), eval_every=1, lr=0.1, early_stopping_patience=None)
    fit(ToyKind(), config(tmp_path / "ref", **kw))
    cut = config(tmp_path / "cut", **kw)
    fit(ToyKind(), cut, stop_after=7)
    path = tmp_path / "cut" / "checkpoint.pt"
    c = torch.load(path, weights_only=True)
    p = c["progress"]
    assert p["lr_scale"] < 1  # the plateau schedule has reduced the rate: the renamed counter matters
    c["progress"] = {"step": p["step"], "plateau_scale": p["lr_scale"], "plateau_best": p["plateau_best"],
                     "plateau_bad": p["plateau_bad"], "best_val": p["best_val"], "bad_evals": p["bad_evals"],
                     "stopped_early": p["stopped_early"], "log_bytes": p["log_bytes"], "rep_fitted": True,
                     "train_wall_s": p["wall_s_all_runs"]}
    atomic_torch_save(c, path)
    s = fit(ToyKind(), cut)
    assert s["resumed_from"] == 7
    assert (tmp_path / "ref" / "metrics.jsonl").read_bytes() == (tmp_path / "cut" / "metrics.jsonl").read_bytes()
