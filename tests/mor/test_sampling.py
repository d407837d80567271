"""Parametric sampling: the study's 18-geometry training grid and 726-geometry test grid, reproductive/predictive
tags, canonical positions that the frame leaves as they are, and warm-start chains of close neighbours."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from fastqmd.mor.frame import canonical_frame
from fastqmd.mor.sampling import (STUDY_TEST, STUDY_TRAINING, InternalGrid, Linspace, SamplingConfig, geometries,
                                  split_chains, to_atoms, warm_start_order)
from fastqmd.units import BOHR_ANG

EXACT = 1e-12


def test_the_study_training_grid_has_18_geometries_all_reproductive():
    g = geometries(SamplingConfig(grid=STUDY_TRAINING, training=STUDY_TRAINING))
    assert len(g) == 18 and all(x.reproductive for x in g)
    pairs = {(x.s1, x.s2) for x in g}
    assert pairs == {(1.0, 0.95), (1.05, 0.95), (1.05, 1.0), (0.95, 0.95), (1.0, 1.0), (1.05, 1.05)}
    assert sorted({x.angle_deg for x in g}) == [99.5, 104.5, 109.5]
    x = next(x for x in g if (x.s1, x.s2, x.angle_offset_deg) == (1.05, 0.95, 5.0))
    h = np.deg2rad(109.5) / 2
    assert np.abs(x.positions_bohr - [[0, 0, 0], [1.05 * 1.83 * np.cos(h), 1.05 * 1.83 * np.sin(h), 0],
                                      [0.95 * 1.83 * np.cos(h), -0.95 * 1.83 * np.sin(h), 0]]).max() < EXACT


def test_the_study_test_grid_has_726_geometries_with_the_training_ones_reproductive():
    g = geometries(SamplingConfig(grid=STUDY_TEST, training=STUDY_TRAINING))
    assert len(g) == 726 and [x.index for x in g] == list(range(726))
    rep = [x for x in g if x.reproductive]
    assert len(rep) == 18  # linspace(0.95, 1.05, 11) holds 0.95, 1.00, 1.05; linspace(−5, 5, 11) holds −5, 0, 5
    assert all(x.s2 <= x.s1 for x in g)
    train = {(round(x.s1, 9), round(x.s2, 9), round(x.angle_offset_deg, 9))
             for x in geometries(SamplingConfig(grid=STUDY_TRAINING))}
    assert {(round(x.s1, 9), round(x.s2, 9), round(x.angle_offset_deg, 9)) for x in rep} == train


def test_sampled_geometries_are_already_canonical_and_convert_to_ase_in_angstrom():
    cfg = SamplingConfig(grid=STUDY_TEST)
    for x in geometries(cfg)[::37]:
        f = canonical_frame(x.positions_bohr)
        assert np.abs(f.to_canonical(x.positions_bohr) - x.positions_bohr).max() < 1e-12
        assert f.swapped is False or x.s1 == x.s2  # ordered grid: frame atom 1 is the longer (or equal) bond
    x = geometries(cfg)[5]
    a = to_atoms(cfg, x, box_bohr=12.0)
    assert a.get_chemical_formula() == "H2O" and np.allclose(a.cell.lengths(), 12.0 * BOHR_ANG)
    assert a.get_distance(0, 1) == pytest.approx(x.s1 * 1.83 * BOHR_ANG, abs=1e-12)
    assert a.get_angle(1, 0, 2) == pytest.approx(x.angle_deg, abs=1e-9)


def test_an_unordered_grid_and_a_linspace_axis():
    g = InternalGrid(bond_factors=Linspace(start=0.9, stop=1.1, num=3), angle_offsets_deg=[0.0], ordered=False)
    assert len(geometries(SamplingConfig(grid=g))) == 9


def test_warm_start_order_visits_every_geometry_once_with_small_steps():
    g = geometries(SamplingConfig(grid=STUDY_TEST))
    order = warm_start_order(g)
    assert sorted(order) == list(range(len(g)))
    X = {x.index: x.positions_bohr for x in g}
    steps = np.array([np.linalg.norm(X[a] - X[b]) for a, b in zip(order, order[1:])])
    grid_order = np.array([np.linalg.norm(X[a] - X[b]) for a, b in zip(range(725), range(1, 726))])
    # one grid step is 0.01·1.83 Bohr in a bond or 1° of angle (≈ 0.016 Bohr of H motion per H)
    assert np.median(steps) < 0.03 and steps.sum() < 0.6 * grid_order.sum()
    chains = split_chains(order, 4)
    assert [len(c) for c in chains] == [182, 182, 181, 181] and sum(chains, []) == order
    assert split_chains(order[:2], 5) == [[order[0]], [order[1]]]


def test_an_unknown_molecule_or_bad_grid_is_refused():
    with pytest.raises(ValidationError, match="unknown molecule 'ammonia'"):
        SamplingConfig(molecule="ammonia", grid=STUDY_TRAINING)
    with pytest.raises(ValidationError, match="bond_factors must be > 0"):
        InternalGrid(bond_factors=[0.0, 1.0], angle_offsets_deg=[0.0])
    with pytest.raises(ValidationError, match="extra"):
        SamplingConfig.model_validate({"grid": {"bond_factors": [1.0], "angle_offsets_deg": [0.0], "angles": 1}})
