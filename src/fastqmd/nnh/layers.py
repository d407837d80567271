"""Lean equivariant layers on e3nn-layout irreps tensors: linear, per-edge-weighted 'uvu' tensor product, gate.

Layout (e3nn's): a tensor with irreps Σ_k mul_k × (l_k, p_k) is [batch, Σ_k mul_k (2l_k+1)], entry k stored as
[mul_k, 2l_k+1] flattened. These layers do what e3nn's `o3.Linear`, `o3.TensorProduct` (mode 'uvu',
per-sample weights) and `nn.Gate` do, but split tensors with `torch.split` (one cat in backward) instead of
slicing per path: e3nn's per-slice backward allocates a full-size zero tensor per slice, which made the backward
of a 64-atom Cu cell ~15× slower than its forward. Wigner 3j symbols and harmonics still come from e3nn.

  Linear:  y^{(l,p)}_v = Σ_u W^{(l,p)}_{uv} x^{(l,p)}_u / √(fan_in)  (+ b_v for 0e)            (mixes mul only)
  TP_uvu:  z^{(k)}_{u,M} = w_{e,k,u} Σ_{m1,m2} √(2L+1) W3j^{l1 l2 L}_{m1 m2 M} x^{(i)}_{u,m1} Y^{(j)}_{m2}
  Gate:    [s | g | v] → [silu(s) | σ(g_u) v_u]
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import Tensor


def entry_dims(irreps: o3.Irreps) -> list[int]:
    """Flat size of every entry: mul·(2l+1)."""
    return [mul * ir.dim for mul, ir in irreps]


def split_entries(x: Tensor, irreps: o3.Irreps) -> list[Tensor]:
    """[B, dim] → list of [B, mul, 2l+1] views, one per entry."""
    parts = torch.split(x, entry_dims(irreps), dim=-1)
    return [p.reshape(x.shape[0], mul, ir.dim) for p, (mul, ir) in zip(parts, irreps)]


class IrrepsLinear(torch.nn.Module):
    """Equivariant linear map irreps_in → irreps_out (same-(l, p) channels mixed; biases on 0e outputs)."""

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, biases: bool = False,
                 n_species: int | None = None):
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.n_species = n_species
        self.groups: dict[str, list[int]] = {}
        for k, (_, ir) in enumerate(self.irreps_in):
            self.groups.setdefault(str(ir), []).append(k)
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        self.plan: list[tuple[str, int, int]] = []  # (ir, weight index or -1 if no input, bias index or -1)
        for mul, ir in self.irreps_out:
            fan_in = sum(self.irreps_in[k].mul for k in self.groups.get(str(ir), []))
            w_idx = -1
            if fan_in:
                shape = (fan_in, mul) if n_species is None else (n_species, fan_in, mul)
                self.weights.append(torch.nn.Parameter(torch.randn(shape)))
                w_idx = len(self.weights) - 1
            b_idx = -1
            if biases and ir == o3.Irrep("0e"):
                self.biases.append(torch.nn.Parameter(torch.zeros(mul)))
                b_idx = len(self.biases) - 1
            self.plan.append((str(ir), w_idx, b_idx))

    def forward(self, x: Tensor, species: Tensor | None = None) -> Tensor:
        xs = split_entries(x, self.irreps_in)
        by_ir = {ir: torch.cat([xs[k] for k in ks], dim=1) if len(ks) > 1 else xs[ks[0]]
                 for ir, ks in self.groups.items()}  # [B, fan_in, 2l+1]
        out = []
        for (mul, ir), (key, w_idx, b_idx) in zip(self.irreps_out, self.plan):
            if w_idx < 0:
                y = x.new_zeros(x.shape[0], mul, ir.dim)
            else:
                W = self.weights[w_idx]
                xi = by_ir[key]
                if self.n_species is None:
                    y = torch.einsum("bum,uv->bvm", xi, W) / math.sqrt(xi.shape[1])
                else:
                    y = torch.einsum("bum,buv->bvm", xi, W[species]) / math.sqrt(xi.shape[1])
            if b_idx >= 0:
                y = y + self.biases[b_idx][None, :, None]
            out.append(y.reshape(x.shape[0], mul * ir.dim))
        return torch.cat(out, dim=-1)


class UVUTensorProduct(torch.nn.Module):
    """z = TP_uvu(x ⊗ Y; w): every (x entry, Y entry, allowed L) path gives mul_x output channels; the paths of
    one (L, p) are stacked, in order, into one entry of `irreps_out`.

    Outputs whose (L, p) is not in `targets` are dropped; `weight_numel` per-sample weights, one per (path, u).
    Computed per x entry i as one GEMM: (x_i ⊗ Y)[B·u, (2l_i+1)·dim_Y] @ W_i[(2l_i+1)·dim_Y, Σ_paths (2L+1)]
    (W_i stacks the √(2L+1)·Wigner 3j of all paths of entry i), then scaled by the path weights. Batched tiny
    matrix products (bmm) were 10× slower on CPU.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, targets: o3.Irreps):
        super().__init__()
        self.irreps_in, self.irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        wanted = {ir for _, ir in o3.Irreps(targets)}
        sh_start = [sl.start for sl in self.irreps_sh.slices()]
        n_sh = self.irreps_sh.dim
        out, self.entry_paths, self.weight_split = [], [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            blocks, dims = [], []
            for j, (_, ir_sh) in enumerate(self.irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in wanted:
                        W = o3.wigner_3j(ir_in.l, ir_sh.l, ir_out.l, dtype=torch.float64) * math.sqrt(ir_out.dim)
                        blocks.append((sh_start[j], W))
                        dims.append(ir_out.dim)
                        out.append((mul, ir_out))
            Wi = torch.zeros(ir_in.dim, n_sh, sum(dims), dtype=torch.float64)
            col_path = []
            c = 0
            for p, ((y0, W), dk) in enumerate(zip(blocks, dims)):
                Wi[:, y0 : y0 + W.shape[1], c : c + dk] = W
                col_path += [p] * dk
                c += dk
            self.register_buffer(f"W_{i}", Wi.reshape(ir_in.dim * n_sh, -1).to(torch.get_default_dtype()))
            self.register_buffer(f"col_path_{i}", torch.tensor(col_path, dtype=torch.long))
            self.entry_paths.append(dims)
            self.weight_split.append(mul * len(dims))
        self.weight_numel = sum(self.weight_split)
        self.irreps_out, perm = self._grouped_layout(out)
        self.register_buffer("out_perm", torch.tensor(perm, dtype=torch.long), persistent=False)  # derived

    def _grouped_layout(self, out: list[tuple[int, o3.Irrep]]) -> tuple[o3.Irreps, list[int]]:
        """Output irreps with all paths of one (L, p) merged into one entry (order of first appearance; within an
        entry, paths in order), and perm with out[:, n] = Z[:, perm[n]] for Z = cat_i z_i.reshape(B, u_i·Σ(2L+1)).
        One gather instead of a cat of every path: the double backward (force loss) of a k-piece cat allocates k
        full-size zero tensors (SliceBackward), which took 45 % of a Cu64 force-loss step with ~200 paths."""
        pos, z0, k = {}, 0, 0  # pos[ir]: Z columns of that ir's merged entry
        for i, dims in enumerate(self.entry_paths):
            u, width, c = self.irreps_in[i].mul, sum(dims), 0
            for dk in dims:
                ir = out[k][1]
                cols = [z0 + a * width + c + m for a in range(u) for m in range(dk)]
                pos.setdefault(ir, []).extend(cols)
                c += dk
                k += 1
            z0 += u * width
        irreps = o3.Irreps([(len(cols) // ir.dim, ir) for ir, cols in pos.items()])
        return irreps, [n for cols in pos.values() for n in cols]

    def forward(self, x: Tensor, Y: Tensor, w: Tensor) -> Tensor:
        B = x.shape[0]
        xs = split_entries(x, self.irreps_in)  # [B, u, 2l+1]
        ws = torch.split(w, self.weight_split, dim=-1)
        out = []
        for i, (xi, wi, dims) in enumerate(zip(xs, ws, self.entry_paths)):
            if not dims:
                continue
            u = xi.shape[1]
            # outer product [B·u, (2l+1)·dim_Y]
            xy = (xi[:, :, :, None] * Y[:, None, None, :]).reshape(B * u, xi.shape[2] * Y.shape[1])
            Wi = getattr(self, f"W_{i}")
            z = (xy @ Wi).reshape(B, u, Wi.shape[1])  # [B, u, Σ(2L+1)]
            z = z * wi.reshape(B, u, len(dims))[:, :, getattr(self, f"col_path_{i}")]
            out.append(z.reshape(B, u * z.shape[2]))
        return torch.cat(out, dim=-1).index_select(1, self.out_perm)


class Gate(torch.nn.Module):
    """Gated nonlinearity producing `irreps_out` (0e scalars first, then l > 0 entries): input irreps are
    [scalars | n_gated × 0e gates | gated], output [silu(scalars) | σ(gate_u)·v_u]."""

    def __init__(self, irreps_out: o3.Irreps):
        super().__init__()
        self.irreps_out = o3.Irreps(irreps_out)
        scal = [(m, ir) for m, ir in self.irreps_out if ir.l == 0]
        if any(ir != o3.Irrep("0e") for _, ir in scal) or self.irreps_out[: len(scal)] != o3.Irreps(scal):
            raise ValueError(f"Gate needs 0e scalars first and no 0o: got {self.irreps_out}")
        self.n_scalars = sum(m for m, _ in scal)
        self.gated = o3.Irreps([(m, ir) for m, ir in self.irreps_out if ir.l > 0])
        self.n_gates = self.gated.num_irreps
        self.irreps_in = o3.Irreps(scal) + o3.Irreps(f"{self.n_gates}x0e") + self.gated

    def forward(self, x: Tensor) -> Tensor:
        s, g, v = torch.split(x, [self.n_scalars, self.n_gates, self.gated.dim], dim=-1)
        if self.n_gates == 0:
            return torch.nn.functional.silu(s)
        g = torch.sigmoid(g)
        gs = torch.split(g, [m for m, _ in self.gated], dim=-1)
        vs = split_entries(v, self.gated)
        out = [torch.nn.functional.silu(s)] + [(vk * gk[:, :, None]).flatten(1) for vk, gk in zip(vs, gs)]
        return torch.cat(out, dim=-1)
