"""Fixtures for the trainer tests: the 8-sample tblite GFN2 water dataset of `fastqmd.testing` and a tiny NNH
model (float64 where numbers are compared)."""

import pytest

from fastqmd.testing import make_water_dataset


@pytest.fixture(scope="session")
def water_h5(tmp_path_factory):
    return make_water_dataset(tmp_path_factory.mktemp("data") / "water.h5")
