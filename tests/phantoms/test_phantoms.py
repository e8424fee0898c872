from __future__ import annotations

import numpy as np
import pytest

from orgseg.errors import ConfigError, DataContractError
from orgseg.phantoms import PHANTOM_ORGANS, make_phantom, plan_sources
from orgseg.phantoms.anatomy import HU


def test_same_seed_same_phantom_other_seed_differs():
    a, b, c = make_phantom(seed=4), make_phantom(seed=4), make_phantom(seed=5)
    np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_every_organ_present_with_its_intensity(small_phantom):
    p = small_phantom
    for organ in PHANTOM_ORGANS:
        region = p.labels == p.label_ids[organ]
        assert region.sum() > 10, organ
        assert np.median(p.ct_hu[region]) == pytest.approx(HU[organ], abs=25), organ
    assert (p.ct_hu[~p.body & ~p.objects] < -900).mean() > 0.99  # air around the patient
    assert p.objects.any() and p.arms.any()


def test_anatomy_is_in_place(small_phantom):
    p = small_phantom
    z_of = {o: np.nonzero(p.labels == p.label_ids[o])[0].mean() for o in PHANTOM_ORGANS}
    assert z_of["lungs"] > z_of["liver"] > z_of["kidneys"] > z_of["urinary_bladder"]
    x_of = {o: np.nonzero(p.labels == p.label_ids[o])[2].mean() for o in ("liver", "spleen")}
    assert x_of["liver"] < x_of["spleen"]  # canonical x runs right -> left
    y_of = {o: np.nonzero(p.labels == p.label_ids[o])[1].mean() for o in ("heart", "vertebrae")}
    assert y_of["heart"] < y_of["vertebrae"]  # y runs anterior -> posterior


def test_paediatric_is_smaller_and_anisotropic_grids_work():
    adult = make_phantom(seed=1, shape=(40, 80, 60), spacing_mm=(10.0, 6.0, 8.0))
    child = make_phantom(seed=1, shape=(40, 80, 60), spacing_mm=(10.0, 6.0, 8.0), paediatric=True)
    assert child.body.sum() < 0.6 * adult.body.sum()
    assert child.spacing_mm == (10.0, 6.0, 8.0)


def test_whole_body_extent_has_head_and_legs():
    p = make_phantom(
        seed=2, shape=(80, 48, 48), spacing_mm=(20.0, 10.0, 10.0), extent="whole_body", noise_hu=0
    )
    slices_with_body = p.body.any(axis=(1, 2))
    assert slices_with_body[:5].any() and slices_with_body[-8:].any()
    assert p.ct_hu.max() >= HU["bone"] - 1


def test_bad_shape_is_rejected():
    with pytest.raises(DataContractError):
        make_phantom(shape=(4, 64, 64))


def test_multi_source_plan_is_partial_and_covers_every_organ():
    plan = plan_sources(n_sources=3, n_cases=5, seed=1)
    labelled = [set(s.organs) for s in plan.sources]
    assert set().union(*labelled) == set(PHANTOM_ORGANS)
    assert all(0 < len(s) < len(PHANTOM_ORGANS) for s in labelled)
    values = [tuple(sorted(v for vs in s.labels.values() for v in vs)) for s in plan.sources]
    assert len(set(values)) == 3  # each source encodes organs its own way
    assert sum(c.official_test for c in plan.cases) == 1
    assert any(c.paediatric for c in plan.cases)
    assert plan == plan_sources(n_sources=3, n_cases=5, seed=1)
    with pytest.raises(ConfigError, match="cannot render"):
        plan_sources(organs=["brain"])
