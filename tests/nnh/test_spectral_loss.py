"""The spectral H loss L_ε (fastqmd.nnh.targets.spectral_h_loss): the H error in the reference's S-orthonormal
eigenbasis. Checked as physics: the frame diagonalises (H, S) with C†SC = 1 at complex k; a rigid shift c·S is
c·1 there; the diagonal is the first-order eigenvalue error (second-order remainder); an orbital-basis error along
a near-null direction of S is amplified by 1/λ_min, which the orbital-basis L_H cannot see; training with
loss.spectral_H > 0 runs and reports the eigenvalue error near μ.
"""

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from fastqmd.nnh.targets import spectral_frame, spectral_h_loss


def pencil(n: int, seed: int, lam_min: float = 1e-2, complex_: bool = False, nk: int = 2):
    """Random Hermitian H [nk, n, n] (eV) and positive definite S with smallest eigenvalue lam_min."""
    rng = np.random.default_rng(seed)
    Hs, Ss = [], []
    for _ in range(nk):
        A = rng.normal(size=(n, n)) + (1j * rng.normal(size=(n, n)) if complex_ else 0)
        Q = np.linalg.qr(A)[0]
        lam = np.geomspace(lam_min, 1.0, n)
        Ss.append((Q * lam) @ Q.conj().T)
        B = rng.normal(size=(n, n)) + (1j * rng.normal(size=(n, n)) if complex_ else 0)
        Hs.append(0.5 * (B + B.conj().T))
    return torch.tensor(np.array(Hs)), torch.tensor(np.array(Ss))


def test_frame_diagonalises_the_pencil_and_a_rigid_shift_is_the_identity():
    H, S = pencil(12, 0, complex_=True)
    C, w = spectral_frame(H, S, mu=0.3, window_eV=2.0)
    eye = torch.eye(12, dtype=C.dtype)
    assert torch.allclose(C.mH @ S @ C, eye.expand_as(C), atol=1e-10)
    ref = np.array([scipy.linalg.eigh(H[k].numpy(), S[k].numpy(), eigvals_only=True) for k in range(2)])
    D = C.mH @ H @ C
    assert np.abs(torch.diagonal(D, dim1=-2, dim2=-1).real.numpy() - ref).max() <= 1e-9
    assert float((D - torch.diag_embed(torch.diagonal(D, dim1=-2, dim2=-1))).abs().max()) <= 1e-9
    c = 0.05  # ΔH = c·S shifts every level by c: C†ΔHC = c·1, L_ε = c² Σ w_nn / Σ w_mn
    expect = c**2 * float(torch.diagonal(w, dim1=-2, dim2=-1).sum() / w.sum())
    assert abs(float(spectral_h_loss(c * S, C, w)) - expect) <= 1e-12
    d = (torch.tensor(ref) - 0.3).abs()
    assert torch.allclose(w[0, 0, -1], 1.0 / (1.0 + (torch.maximum(d[0, 0], d[0, -1]) / 2.0) ** 2))


def test_diagonal_is_the_first_order_eigenvalue_error():
    H, S = pencil(10, 1, nk=1)
    C, _ = spectral_frame(H, S, mu=float("nan"), window_eV=1.0)
    rng = np.random.default_rng(2)
    P = rng.normal(size=(10, 10))
    P = torch.tensor(0.5 * (P + P.T))[None]
    e0 = scipy.linalg.eigh(H[0].numpy(), S[0].numpy(), eigvals_only=True)
    first = torch.diagonal(C.mH @ P @ C, dim1=-2, dim2=-1)[0].numpy()
    rem = []
    for h in (1e-3, 5e-4):
        e = scipy.linalg.eigh((H[0] + h * P[0]).numpy(), S[0].numpy(), eigvals_only=True)
        rem.append(np.abs(e - e0 - h * first).max())
    assert rem[0] > 0 and 3.0 <= rem[0] / rem[1] <= 5.0  # the remainder is second order: halving h quarters it


def test_an_error_along_a_near_null_direction_of_S_is_amplified_by_one_over_lambda_min():
    """Cu dzp has λ_min(S) ≈ 2e-5; here 1e-5. An orbital-basis error δ·u uᵀ (u the near-null eigenvector) is
    δ/λ_min in the eigenbasis — what wrecks the eigenvalues of a model trained on the orbital-basis L_H alone."""
    H, S = pencil(16, 3, lam_min=1e-5, nk=1)
    s, U = torch.linalg.eigh(S[0])
    u = U[:, :1]
    delta = 1e-3
    dH = (delta * u @ u.T)[None]
    C, w = spectral_frame(H, S, mu=float("nan"), window_eV=1.0)
    D = C.mH @ dH @ C
    assert abs(float(torch.linalg.matrix_norm(D)) - delta / float(s[0])) <= 1e-6 * delta / float(s[0])
    assert float(spectral_h_loss(dH, C, w)) / float((dH**2).mean()) >= 1e9


def test_training_with_the_spectral_loss(tmp_path):
    """Same seed and data: step 1's L_H grows by exactly spectral_H · L_ε ≥ 0; validation reports the eigenvalue
    error near μ (NaN on this gapped molecule: μ lies mid-gap, no level within ±1 eV)."""
    from fastqmd.nnh.train import TrainConfig, train
    from fastqmd.testing import make_water_dataset

    data = make_water_dataset(tmp_path / "water.h5", n=4)
    tiny = {"cutoff": 3.0, "hidden_irreps": "8x0e+4x1o+4x1e+2x2e", "n_layers": 1, "radial_hidden": 8, "n_radial": 4,
            "n_scalars_embed": 8, "repulsion_cutoff": 2.5, "lmax": 2}
    first = {}
    for spectral in (0.0, 1.0):
        run = tmp_path / f"run{spectral:g}"
        cfg = TrainConfig(dataset=data, output=run, split={"val_fraction": 0.25, "test_fraction": 0}, model=tiny,
                          max_steps=2, batch_size=2, ema_decay=0.0, dtype="float64", progress=False,
                          checkpoint_every=100, eval_every=1, loss={"spectral_H": spectral, "h_only_steps": 1})
        train(cfg, overwrite=True)
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        steps = [x for x in lines if "L_H" in x]
        assert steps and all(np.isfinite(x["loss"]) for x in steps)
        vals = [x["val"] for x in lines if "val" in x]
        assert vals and "eig_fermi_mae_eV" in vals[-1] and np.isfinite(vals[-1]["H_mae_eV"])
        first[spectral] = steps[0]["L_H"]
    assert first[1.0] > first[0.0] > 0
