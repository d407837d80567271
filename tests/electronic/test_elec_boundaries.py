"""fastqmd.electronic is pure math: no module in it imports the NNH package (or anything above it); a bad S is a
CalculationFailed; a Cholesky factor handed to the free energy is the only factorization of S, forward or backward."""

import ast
from pathlib import Path

import pytest
import torch

import fastqmd.electronic
from fastqmd.electronic import OverlapNotPositiveDefiniteError, free_energy
from fastqmd.electronic.free_energy import cholesky_overlap, hermitize
from fastqmd.errors import CalculationFailed

F64 = torch.float64
FORBIDDEN = ("fastqmd.nnh", "fastqmd.mor", "fastqmd.md", "fastqmd.training")  # the model kinds built on electronic/


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module an `import` / `from … import` statement of the file names (any depth)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add("." * node.level + (node.module or ""))
    return names


def test_no_electronic_module_imports_a_model_package():
    files = sorted(Path(fastqmd.electronic.__file__).parent.rglob("*.py"))
    assert len(files) >= 5  # the check really reads the package
    bad = {f.name: sorted(n for n in imported_modules(f) if n.startswith(FORBIDDEN) or n.startswith(".."))
           for f in files}
    assert not any(bad.values()), bad


def test_overlap_error_is_a_calculation_failure_and_a_value_error():
    assert issubclass(OverlapNotPositiveDefiniteError, CalculationFailed)
    assert issubclass(OverlapNotPositiveDefiniteError, ValueError)
    S = torch.eye(3, dtype=F64).repeat(2, 1, 1)
    S[1, 0, 1] = S[1, 1, 0] = 1.5
    with pytest.raises(CalculationFailed, match="k-point 1 is not positive definite"):
        cholesky_overlap(S)


def _problem(seed: int = 0, nk: int = 2, n: int = 5):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(nk, n, n, dtype=torch.complex128, generator=g)
    B = torch.randn(nk, n, n, dtype=torch.complex128, generator=g)
    H = hermitize(A)
    S = hermitize(torch.eye(n, dtype=torch.complex128) + 0.1 * (B @ B.mH))
    return H, S, torch.full((nk,), 1.0 / nk, dtype=F64)


def test_given_cholesky_factor_is_the_only_factorization(monkeypatch):
    """A, ∂A/∂S and the force-loss-style second derivative are bitwise those of the unfactored call; torch's
    Cholesky runs once per call (the forward's, or the caller's factor), never again in the backward."""
    H0, S0, w = _problem()

    def run(with_factor: bool):
        H, S = H0.clone().requires_grad_(True), S0.clone().requires_grad_(True)
        L = cholesky_overlap(hermitize(S.detach())) if with_factor else None
        A = free_energy(H, S, w, n_electrons=4.0, kT=0.1, cholesky=L)
        gH, gS = torch.autograd.grad(A, (H, S), create_graph=True)
        loss = (gH.abs() ** 2).sum() + (gS.abs() ** 2).sum()
        second = torch.autograd.grad(loss, (H, S))
        return [A.detach(), gH.detach(), gS.detach(), *second]

    calls = []
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(torch.linalg, "cholesky", lambda *a, **k: pytest.fail("unexpected torch.linalg.cholesky"))
    plain = run(False)
    n_plain, calls[:] = len(calls), []
    factored = run(True)
    assert n_plain == 1  # the forward's factor serves the double backward too
    assert len(calls) == 1  # the caller's factor only
    for a, b in zip(plain, factored):
        assert torch.equal(a, b)
