from __future__ import annotations

import itertools

import numpy as np
import pytest

from orgseg.core.orientation import from_canonical, to_canonical
from orgseg.core.volume import CANONICAL_DIRECTION, Volume
from orgseg.errors import DataContractError


def world(volume: Volume, idx) -> np.ndarray:
    idx = np.asarray(idx, float)
    return np.asarray(volume.origin_mm) + sum(
        idx[a] * volume.spacing_mm[a] * volume.direction[a] for a in range(3)
    )


def rotation(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


DIRECTIONS = []
for perm in itertools.permutations(range(3)):
    for signs in itertools.product((1.0, -1.0), repeat=3):
        DIRECTIONS.append(np.eye(3)[list(perm)] * np.array(signs)[:, None])


@pytest.mark.parametrize("direction", DIRECTIONS[::5] + [rotation(20) @ DIRECTIONS[3]])
def test_round_trip_is_exact_and_keeps_world_positions(direction):
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(5, 6, 7)).astype(np.int16)
    vol = Volume(
        arr, spacing_mm=(2.5, 0.8, 1.1), origin_mm=(10.0, -20.0, 30.0), direction=direction
    )
    canon, rec = to_canonical(vol)
    # canonical: axis 0 mostly superior, axis 1 posterior, axis 2 left, all positive
    assert np.all(np.diag(np.abs(canon.direction @ CANONICAL_DIRECTION.T)) > 0.9)
    assert np.all(np.einsum("ij,ij->i", canon.direction, CANONICAL_DIRECTION) > 0.9)
    # every voxel keeps its value and world position
    for idx in [(0, 0, 0), (1, 2, 3), tuple(s - 1 for s in canon.shape)]:
        orig_idx = np.zeros(3, int)
        for n, a in enumerate(rec.perm):
            orig_idx[a] = (canon.shape[n] - 1 - idx[n]) if rec.flips[n] else idx[n]
        assert canon.array[idx] == arr[tuple(orig_idx)]
        np.testing.assert_allclose(world(canon, idx), world(vol, orig_idx), atol=1e-6)
    back = from_canonical(np.asarray(canon.array), rec)
    np.testing.assert_array_equal(back.array, arr)
    assert back.same_grid(vol)


def test_oblique_residual_rotation_stays_in_direction():
    vol = Volume(np.zeros((3, 4, 5)), direction=rotation(30) @ np.eye(3)[[2, 1, 0]])
    canon, _ = to_canonical(vol)
    assert not np.allclose(canon.direction, CANONICAL_DIRECTION)  # oblique kept, not resampled
    assert canon.shape in {(3, 4, 5), (3, 5, 4)}


def test_degenerate_direction_is_rejected():
    with pytest.raises(DataContractError, match="direction"):
        to_canonical(Volume(np.zeros((2, 2, 2)), direction=np.zeros((3, 3))))


def test_from_canonical_checks_shape():
    _, rec = to_canonical(Volume(np.zeros((2, 3, 4))))
    with pytest.raises(DataContractError, match="expected a canonical array of shape"):
        from_canonical(np.zeros((4, 3, 2)), rec)
