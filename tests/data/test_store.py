"""The HDF5 store: round trip of every field, block reads without dense loads, atomic replacement."""

import h5py
import numpy as np
import pytest
import torch

from fastqmd.data.schema import SAMPLES
from fastqmd.data.store import Dataset, Failure, Header, atomic_write, write_failure, write_header, write_sample
from fastqmd.data.torch_dataset import HamiltonianDataset
from fastqmd.errors import InputError
from fastqmd.reference.base import BasisSpec, Sample

BASIS = BasisSpec({"O": (0, 0, 0, 1, 1, 2), "H": (0, 0, 1)})  # def2-SVP-like: O 14, H 5 orbitals


def fake_sample(rng, nk=1, complex_=False):
    numbers = np.array([8, 1, 1])
    nao = 14 + 5 + 5
    A = rng.normal(size=(nk, nao, nao)) + (1j * rng.normal(size=(nk, nao, nao)) if complex_ else 0)
    H = A + np.conj(np.swapaxes(A, 1, 2))
    S = np.broadcast_to(np.eye(nao), (nk, nao, nao)).copy()
    return Sample(
        numbers=numbers, positions=rng.normal(size=(3, 3)), cell=np.zeros((3, 3)), pbc=np.zeros(3, bool),
        energy=-2077.5, forces=rng.normal(size=(3, 3)), basis=BASIS,
        kpoints=rng.uniform(size=(nk, 3)), kweights=np.full(nk, 1 / nk), H=H, S=S,
        eigenvalues=np.sort(rng.normal(size=(nk, nao)), axis=1), occupations=np.zeros((nk, nao)),
        n_electrons=10.0, fermi_level=None, electronic_temperature_K=0.0, engine="fake", settings={"a": 1},
        versions={"fake": "1"}, wall_time_s=0.1, extras={"homo": np.float64(-7.0)},
    )


def write_dataset(path, samples, failures=()):
    def fill(f):
        write_header(f, Header("fake", {"a": 1}))
        for i, s in enumerate(samples):
            write_sample(f, i, s, "test[0]", 0.95)
        for fl in failures:
            write_failure(f, fl, "test[0]", 0.95)

    atomic_write(path, fill)


@pytest.mark.parametrize("nk,complex_", [(1, False), (3, True)])
def test_roundtrip_every_field(tmp_path, nk, complex_):
    rng = np.random.default_rng(0)
    s = fake_sample(rng, nk, complex_)
    write_dataset(tmp_path / "d.h5", [s])
    ds = Dataset(tmp_path / "d.h5")
    d = ds.read("00000000")
    for name in ("numbers", "positions", "forces", "H", "S", "eigenvalues", "occupations", "kpoints", "kweights"):
        np.testing.assert_array_equal(d[name], getattr(s, name))
    assert d["energy"] == s.energy and np.isnan(d["fermi_level"]) and d["status"] == "ok"
    assert ds.basis == BASIS and ds.header == Header("fake", {"a": 1})
    np.testing.assert_array_equal(d["orbital_offsets"], [0, 14, 19, 24])


def test_block_read_touches_only_its_chunks(tmp_path):
    """A 216-atom-sized matrix: one atom-pair block reads a handful of chunks, not the dense matrix."""
    nao = 216 * 9
    basis = BasisSpec({"Cu": (0, 1, 2)})
    rng = np.random.default_rng(1)
    s = fake_sample(rng)
    H = np.zeros((1, nao, nao))
    H[0, 900:909, 18:27] = rng.normal(size=(9, 9))
    s.numbers, s.basis, s.H, s.S = np.full(216, 29), basis, H, H.copy()
    s.positions, s.forces = rng.normal(size=(216, 3)), None
    write_dataset(tmp_path / "big.h5", [s])
    ds = Dataset(tmp_path / "big.h5")
    dset = ds.group("00000000")["H"]
    assert dset.chunks == (1, 64, 64)
    blk = ds.block("00000000", "H", 100, 2)
    np.testing.assert_array_equal(blk, H[0, 900:909, 18:27])
    # HDF5 reads only the chunks a selection overlaps: here one tile of the 31×31 stored
    off = ds.group("00000000")["orbital_offsets"][()]
    rows = {r // 64 for r in (off[100], off[101] - 1)}
    cols = {c // 64 for c in (off[2], off[3] - 1)}
    assert len(rows) * len(cols) == 1 and dset.id.get_num_chunks() == 31 * 31


def test_failed_samples_are_listed_and_skipped_by_torch_dataset(tmp_path):
    rng = np.random.default_rng(2)
    s = fake_sample(rng)
    fl = Failure(1, s.numbers, s.positions, s.cell, s.pbc, "SCFError: not converged in 50 cycles")
    write_dataset(tmp_path / "d.h5", [s], [fl])
    ds = Dataset(tmp_path / "d.h5")
    assert ds.keys("ok") == ["00000000"] and ds.keys("failed") == ["00000001"]
    assert ds.atoms("00000001").info["error"].startswith("SCFError")
    tds = HamiltonianDataset(tmp_path / "d.h5")
    assert len(tds) == 1
    item = tds[0]
    assert item["H"].dtype == torch.float64 and item["numbers"].dtype == torch.int64
    assert torch.equal(item["H"], torch.from_numpy(s.H))


def test_atomic_write_keeps_old_file_when_fill_crashes(tmp_path):
    rng = np.random.default_rng(3)
    write_dataset(tmp_path / "d.h5", [fake_sample(rng)])
    before = (tmp_path / "d.h5").read_bytes()

    def bad_fill(f):
        write_header(f, Header("fake", {"a": 1}))
        raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "d.h5", bad_fill)
    assert (tmp_path / "d.h5").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.h5"]  # no temporary left behind


def test_damaged_header_is_one_input_error(tmp_path):
    """Every way a root attribute can be damaged is one InputError naming the file, raised on opening."""
    rng = np.random.default_rng(4)
    damage = {"schema_version": lambda f: f.attrs.__delitem__("schema_version"),
              "settings": lambda f: f.attrs.__setitem__("settings", "{not json"),
              "basis": lambda f: f.attrs.__setitem__("basis", "[1, 2]"),
              "samples": lambda f: f.__delitem__(SAMPLES)}
    for name, edit in damage.items():
        path = tmp_path / f"{name}.h5"
        write_dataset(path, [fake_sample(rng)])
        with h5py.File(path, "r+") as f:
            edit(f)
        with pytest.raises(InputError, match=f"{name}.h5: corrupt dataset header"):
            Dataset(path)


def test_not_a_dataset_is_input_error(tmp_path):
    (tmp_path / "x.h5").write_text("hello")
    with pytest.raises(InputError):
        Dataset(tmp_path / "x.h5")
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f.create_group(SAMPLES)
    with pytest.raises(InputError, match="not a fastqmd dataset"):
        Dataset(tmp_path / "y.h5")
