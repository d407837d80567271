"""A lazy torch `Dataset` over a fastqmd HDF5 dataset: one item per successful sample (or per given key).

Items are dicts of float64/complex128/int64 tensors in ASE units (see `fastqmd.data.schema`):
numbers [N], positions [N, 3], cell [3, 3], pbc [3], energy [], forces [N, 3] (if present),
orbital_offsets [N+1], kpoints [nk, 3], kweights [nk], H [nk, nao, nao], S [nk, nao, nao] (not with
with_matrices=False), eigenvalues [nk, nmo], occupations [nk, nmo] (likewise), n_electrons [],
electronic_temperature_K [], fermi_level [], index [].
Each access reads one sample and keeps nothing: training and evaluation read through it
(`fastqmd.nnh.targets.TargetSet`), so their memory does not grow with the dataset.
The HDF5 file is opened on first access in each process (DataLoader workers each get their own handle).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fastqmd.data.store import Dataset

_ARRAYS = ("numbers", "positions", "cell", "pbc", "forces", "orbital_offsets", "kpoints", "kweights",
           "H", "S", "eigenvalues", "occupations")
_MATRICES = ("H", "S", "eigenvalues", "occupations")  # the bulk of a sample; not read with with_matrices=False


class HamiltonianDataset(torch.utils.data.Dataset):
    def __init__(self, path: str | Path, keys: list[str] | None = None, with_matrices: bool = True):
        self.store = Dataset(path)
        self.keys = list(keys) if keys is not None else self.store.keys("ok")
        self.arrays = _ARRAYS if with_matrices else tuple(a for a in _ARRAYS if a not in _MATRICES)
        self.store.close()  # reopened lazily in whichever process reads

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        d = self.store.read(self.keys[i], self.arrays)
        item = {name: torch.from_numpy(np.ascontiguousarray(d[name])) for name in self.arrays if name in d}
        for name in ("numbers", "orbital_offsets"):
            item[name] = item[name].long()
        for name in ("energy", "n_electrons", "electronic_temperature_K", "fermi_level"):
            item[name] = torch.tensor(float(d[name]), dtype=torch.float64)
        item["index"] = torch.tensor(int(self.keys[i]))
        return item
