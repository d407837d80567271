"""Every data-generation file in examples/ and every NNH training file under benchmarks/nnh_* validates against its
config class (a typo in a shipped study file fails here, not hours into a run)."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GENERATE = sorted(p for p in (ROOT / "examples").glob("*.yaml") if "structures" in yaml.safe_load(p.read_text()))
NNH_TRAIN = sorted(ROOT.glob("benchmarks/nnh_*/train*.yaml"))


def test_there_are_files_to_check():
    assert len(GENERATE) >= 10 and len(NNH_TRAIN) >= 5


@pytest.mark.parametrize("path", GENERATE, ids=[p.name for p in GENERATE])
def test_generate_config_validates(path):
    from fastqmd.data.generate import GenerateConfig

    GenerateConfig.model_validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", NNH_TRAIN, ids=[f"{p.parent.name}/{p.name}" for p in NNH_TRAIN])
def test_nnh_train_config_validates(path):
    from fastqmd.nnh.train import TrainConfig

    TrainConfig.model_validate(yaml.safe_load(path.read_text()))
