"""CUDA (runs only where a GPU is present; CI has none): the same float64 model gives the same energy, forces,
cell gradient and force-loss parameter gradient on CUDA as on CPU."""

import copy

import pytest
import torch
from test_nnh_energy_gradients import total_energy

from fastqmd.electronic import monkhorst_pack

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
RTOL = 1e-9  # float64 on both devices: only summation order differs


def _run(h_model, s_model, rep_model, g, pos, cell, kpts, kw, device):
    h, s, r = (copy.deepcopy(m).to(device) for m in (h_model, s_model, rep_model))
    p = torch.tensor(pos, device=device, requires_grad=True)
    c = torch.tensor(cell, device=device, requires_grad=True)
    E = total_energy(h, s, r, g.to(device), p, c, kpts.to(device), kw.to(device))
    dp, dc = torch.autograd.grad(E, (p, c), create_graph=True)
    loss = (dp**2).sum()  # a force loss: needs the double backward through the eigensolver
    gw = torch.autograd.grad(loss, [q for q in h.parameters() if q.requires_grad])
    return [E.detach().cpu(), dp.detach().cpu(), dc.detach().cpu(), *(x.detach().cpu() for x in gw)]


def test_cuda_matches_cpu(h_model, s_model, rep_model, crystal):
    symbols, pos, cell = crystal
    pos, cell = pos * 1.15, cell * 1.15
    g = h_model.graph(symbols, pos, cell, True)
    kpts, kw = monkhorst_pack((2, 2, 1))
    kpts, kw = torch.as_tensor(kpts), torch.as_tensor(kw)
    a = _run(h_model, s_model, rep_model, g, pos, cell, kpts, kw, "cpu")
    b = _run(h_model, s_model, rep_model, g, pos, cell, kpts, kw, "cuda")
    for x, y in zip(a, b):
        assert torch.allclose(x, y, rtol=RTOL, atol=RTOL * float(x.abs().max())), float((x - y).abs().max())
