"""Fit the learned two-centre overlap head to tblite GFN1-xTB overlaps of randomly oriented Cu–Cu and Cu–H dimers.

A two-centre S is exactly representable by `TwoCentreOverlap` *if* tblite's orbital convention is the fastqmd
one: an O(3)-equivariant head cannot fit randomly rotated targets in a different convention. So a small
train/test error on randomly oriented dimers checks the convention chain tblite → fastqmd → nnh, and measures
how well the radial functions are learned. All dimers of a split are packed into one molecule, 25 Å apart
(> cutoff), so one forward evaluates them all.

Command (CPU, ~1.5 min on a loaded 2-core machine), which made overlap_fit_tblite.json:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnh/overlap_fit_tblite.py --steps 3000 \
        --out benchmarks/nnh/overlap_fit_tblite.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from ase import Atoms

from fastqmd.nnh import OverlapConfig, TwoCentreOverlap, to_kspace
from fastqmd.reference.base import SCFError
from fastqmd.reference.xtb import TBLiteEngine

SPACING = 25.0  # Å between dimers (> cutoff)


def dimers(pairs: list[tuple[str, str]], n: int, seed: int, d_range=(1.4, 5.0)):
    """n random dimers: (symbols, positions [2, 3]) with random species pair, distance and orientation."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = pairs[rng.integers(len(pairs))]
        lo = d_range[0] if "H" in (a, b) else max(d_range[0], 1.9)
        u = rng.normal(size=3)
        out.append(([a, b], np.array([[0.0, 0.0, 0.0], rng.uniform(lo, d_range[1]) * u / np.linalg.norm(u)])))
    return out


def reference(engine, items):
    """tblite S for each dimer and the basis."""
    S, basis, kept = [], None, []
    for sym, pos in items:
        try:
            s = engine.compute(Atoms(sym, positions=pos))
        except SCFError:  # S does not depend on the SCF, but tblite only returns it after one
            continue
        S.append(s.S[0].real)
        kept.append((sym, pos))
        basis = s.basis if basis is None else BasisMerge(basis, s.basis)
    items[:] = kept
    return S, basis


def BasisMerge(a, b):
    from fastqmd.reference.base import BasisSpec

    return BasisSpec({**a.shells, **b.shells})


def pack(items):
    """All dimers in one molecule: symbols, positions, and each dimer's (atom0, atom1) index."""
    symbols, pos = [], []
    for k, (sym, p) in enumerate(items):
        symbols += sym
        pos.append(p + [SPACING * k, 0.0, 0.0])
    return symbols, np.concatenate(pos)


def offdiag_targets(items, S, basis):
    """Flattened reference off-site blocks S_01 of all dimers, and the index of each in the packed matrix."""
    offs_all = basis.offsets(pack(items)[0])
    rows, cols, vals = [], [], []
    for k, ((sym, _), s) in enumerate(zip(items, S)):
        o = basis.offsets(sym)
        blk = s[o[0] : o[1], o[1] : o[2]]
        r0, c0 = offs_all[2 * k], offs_all[2 * k + 1]
        rr, cc = np.meshgrid(np.arange(blk.shape[0]), np.arange(blk.shape[1]), indexing="ij")
        rows.append((r0 + rr).ravel())
        cols.append((c0 + cc).ravel())
        vals.append(blk.ravel())
    return torch.tensor(np.concatenate(rows)), torch.tensor(np.concatenate(cols)), torch.tensor(np.concatenate(vals))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=60)
    ap.add_argument("--n-test", type=int, default=30)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    engine = TBLiteEngine("GFN1-xTB", electronic_temperature_K=3000.0)  # smearing only eases the SCF
    pairs = [("Cu", "Cu"), ("Cu", "H")]
    t0 = time.perf_counter()
    train, test = dimers(pairs, args.n_train, 1), dimers(pairs, args.n_test, 2)
    S_train, basis = reference(engine, train)
    S_test, basis2 = reference(engine, test)
    basis = BasisMerge(basis, basis2)
    t_ref = time.perf_counter() - t0
    model = TwoCentreOverlap(OverlapConfig(basis=basis.shells, cutoff=7.0, radial_hidden=64, dtype="float64"))
    for sym in basis.shells:  # on-site constants from the reference (tblite: orthonormal atomic functions)
        k = next(i for i, (s, _) in enumerate(train) if s[0] == sym or s[1] == sym)
        s0 = train[k][0].index(sym)
        o = basis.offsets(train[k][0])
        model.set_onsite_from_block(sym, S_train[k][o[s0] : o[s0 + 1], o[s0] : o[s0 + 1]])

    def predict(items):
        symbols, pos = pack(items)
        g = model.graph(symbols, pos, np.zeros((3, 3)), False)
        return to_kspace(model(torch.tensor(pos), torch.zeros(3, 3, dtype=torch.float64), g), g, torch.zeros(1, 3))[0]

    tr, te = offdiag_targets(train, S_train, basis), offdiag_targets(test, S_test, basis)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    t1 = time.perf_counter()
    for step in range(args.steps):
        opt.zero_grad()
        loss = ((predict(train)[tr[0], tr[1]] - tr[2]) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            print(f"step {step} train RMSE {loss.item() ** 0.5:.2e}")
    t_fit = time.perf_counter() - t1
    with torch.no_grad():
        err_tr = (predict(train)[tr[0], tr[1]] - tr[2]).abs()
        err_te = (predict(test)[te[0], te[1]] - te[2]).abs()
        onsite_err = max(float((predict(test) - torch.block_diag(*[torch.tensor(s) for s in S_test])).abs()
                               .masked_select(torch.block_diag(*[torch.ones(len(s), len(s)) for s in S_test]) > 0)
                               .max()), 0.0)
    res = dict(engine="tblite GFN1-xTB", pairs=pairs, basis=basis.to_json(), n_train=len(train),
               n_test=len(test), distance_range_A=[1.4, 5.0], steps=args.steps,
               train_mae=float(err_tr.mean()), train_max=float(err_tr.max()), test_mae=float(err_te.mean()),
               test_max=float(err_te.max()), test_mean_abs_target=float(te[2].abs().mean()),
               test_max_abs_any_element=onsite_err, reference_s=t_ref, fit_s=t_fit)
    print(json.dumps(res, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
