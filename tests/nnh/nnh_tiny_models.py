"""A tiny water EnergyModel on the exact STO-3G overlap, shared by the baseline and ks tests (a uniquely named
module: tests folders are not packages)."""

import torch


def tiny_model(baseline, **config):
    """O (s, s, p) + H (s) in STO-3G, one layer, float64, seed 0; `baseline` None | "core" | "core+hartree";
    `config`: further EnergyModelConfig fields (e.g. energy_mode)."""
    from fastqmd.nnh import NNHConfig, RepulsionConfig
    from fastqmd.nnh.energy import EnergyModel, EnergyModelConfig

    basis = {"O": (0, 0, 1), "H": (0,)}
    h = NNHConfig(basis=basis, cutoff=3.0, hidden_irreps="8x0e+4x1o+4x1e+2x2e", n_layers=1, radial_hidden=8,
                  n_scalars_embed=8, n_radial=4, avg_num_neighbors=2, dtype="float64")
    torch.manual_seed(0)
    return EnergyModel(EnergyModelConfig(**{
        "h": h, "overlap": {"kind": "exact", "pyscf_basis": "sto-3g"},
        "repulsion": RepulsionConfig(species=("H", "O"), cutoff=2.5, dtype="float64"),
        "electronic_temperature_K": 300.0, "valence_electrons": {"O": 8.0, "H": 1.0},
        "h_baseline": None if baseline is None else {"kind": baseline, "pyscf_basis": "sto-3g"}, **config}))
