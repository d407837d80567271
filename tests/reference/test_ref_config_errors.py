"""Engine configs (frozen, extra keys rejected, discriminated on `kind`) and unsupported input -> InputError."""

import json
import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from pydantic import ValidationError

from fastqmd.errors import InputError
from fastqmd.reference.base import Engine
from fastqmd.reference.config import (
    PySCFMolConfig,
    PySCFPBCConfig,
    TBLiteConfig,
    build_engine,
    parse_engine_config,
)


@pytest.mark.parametrize(
    "data,cls",
    [
        ({"kind": "pyscf-mol"}, PySCFMolConfig),
        ({"kind": "pyscf-pbc", "kmesh": [2, 2, 2], "smearing_K": 1000}, PySCFPBCConfig),
        ({"kind": "tblite", "method": "GFN2-xTB"}, TBLiteConfig),
    ],
)
def test_configs_parse_build_pickle_and_identify_the_level_of_theory(data, cls):
    cfg = parse_engine_config(data)
    assert isinstance(cfg, cls)
    eng = build_engine(cfg)
    assert isinstance(eng, Engine)
    assert json.loads(json.dumps(eng.settings)) == eng.settings  # plain JSON
    assert pickle.loads(pickle.dumps(cfg)) == cfg  # Dask ships configs
    assert build_engine(pickle.loads(pickle.dumps(cfg))).settings == eng.settings


def test_settings_differ_between_levels_of_theory():
    a = build_engine(parse_engine_config({"kind": "pyscf-mol"})).settings
    b = build_engine(parse_engine_config({"kind": "pyscf-mol", "basis": "def2-TZVP"})).settings
    c = build_engine(parse_engine_config({"kind": "tblite", "electronic_temperature_K": 500})).settings
    d = build_engine(parse_engine_config({"kind": "tblite"})).settings
    assert a != b and c != d


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "pyscf-mol", "bassis": "def2-SVP"},  # unknown key
        {"kind": "tblite", "method": "GFN3-xTB"},  # not a method
        {"kind": "pyscf-pbc", "kmesh": [2, 2]},  # wrong shape
        {"kind": "vasp"},  # unknown engine
        {"kind": "tblite", "electronic_temperature_K": -1},
    ],
)
def test_bad_engine_configs_are_rejected(data):
    with pytest.raises(ValidationError):
        parse_engine_config(data)


def test_configs_are_frozen():
    cfg = TBLiteConfig()
    with pytest.raises(ValidationError):
        cfg.method = "GFN2-xTB"


def one_line(exc: Exception) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg
    return msg


def test_pyscf_mol_rejects_element_missing_from_basis_and_periodic_input():
    eng = build_engine(PySCFMolConfig())
    with pytest.raises(InputError) as e:
        eng.check(Atoms("UH", positions=[[0, 0, 0], [0, 0, 2.0]]))  # def2-SVP stops at Rn
    assert "U" in one_line(e.value)
    with pytest.raises(InputError):
        eng.compute(bulk("Cu"))


def test_pyscf_pbc_rejects_element_missing_from_basis_or_pseudo_and_molecules():
    with pytest.raises(InputError) as e:
        build_engine(PySCFPBCConfig(basis="gth-szv")).check(bulk("Cu"))  # gth-szv has no Cu in PySCF 2.14
    assert "Cu" in one_line(e.value)
    build_engine(PySCFPBCConfig(basis="gth-szv-molopt-sr")).check(bulk("Cu"))  # ... this one has
    with pytest.raises(InputError, match="U"):
        build_engine(PySCFPBCConfig()).check(Atoms("U", cell=np.eye(3) * 5, pbc=True))
    with pytest.raises(InputError):
        build_engine(PySCFPBCConfig()).check(molecule("H2O"))


def test_tblite_rejects_elements_beyond_radon_and_mixed_pbc():
    eng = build_engine(TBLiteConfig())
    with pytest.raises(InputError) as e:
        eng.compute(Atoms("UH", positions=[[0, 0, 0], [0, 0, 2.0]]))
    assert "U" in one_line(e.value)
    slab = bulk("Cu", cubic=True)
    slab.pbc = [True, True, False]
    with pytest.raises(InputError):
        eng.check(slab)
    eng.check(molecule("H2O"))  # fine
    eng.check(Atoms("Rn", positions=np.zeros((1, 3))))  # Z = 86 is the last supported
