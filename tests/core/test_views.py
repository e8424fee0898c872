"""The three views show what their names say, in radiological convention.

A phantom volume (canonical z, y, x = inferior->superior, anterior->posterior,
right->left) carries one marker on each of the patient's left, anterior and superior
sides, plus a 'spine' (a column behind the centre) and two 'hips' (low, one each side).
"""

from __future__ import annotations

import numpy as np

from orgseg.core.views import orthogonal_views, view_centre

Z, Y, X = 40, 30, 50
LEFT, ANTERIOR, SUPERIOR, SPINE, HIP = 1, 2, 3, 4, 5


def phantom() -> np.ndarray:
    v = np.zeros((Z, Y, X), np.uint8)
    c = (Z // 2, Y // 2, X // 2)
    v[c[0], c[1], X - 4 :] = LEFT  # the patient's left: high x
    v[c[0], :4, c[2]] = ANTERIOR  # the front: low y
    v[Z - 4 :, c[1], c[2]] = SUPERIOR  # the head end: high z
    v[8 : Z - 8, Y - 8, c[2]] = SPINE  # behind the centre, along z
    v[4, c[1], 8] = v[4, c[1], X - 9] = HIP  # low, right and left
    return v


def where(img: np.ndarray, value: int) -> tuple[float, float]:
    """Mean (row, col) of ``value`` as a share of the picture (0 top/left, 1 bottom/right)."""
    rows, cols = np.nonzero(img == value)
    return rows.mean() / (img.shape[0] - 1), cols.mean() / (img.shape[1] - 1)


def test_each_view_is_the_plane_it_is_named_for():
    v = phantom()
    views = {w.name: w.image for w in orthogonal_views(v, (Z // 2, Y // 2, X // 2), (2, 1, 1))}
    assert list(views) == ["axial", "coronal", "sagittal"]

    axial = views["axial"]
    assert where(axial, ANTERIOR)[0] < 0.2  # anterior at the top
    assert where(axial, LEFT)[1] > 0.8  # the patient's left on the picture's right

    coronal = views["coronal"]
    assert where(coronal, SUPERIOR)[0] < 0.2  # the head at the top
    assert where(coronal, LEFT)[1] > 0.8
    hips = np.nonzero(coronal == HIP)
    assert len(set(hips[1])) == 2 and where(coronal, HIP)[0] > 0.8  # both hips, low
    assert not (coronal == SPINE).any()  # the spine lies behind this plane

    sagittal = views["sagittal"]
    assert where(sagittal, SUPERIOR)[0] < 0.2
    assert where(sagittal, ANTERIOR)[1] < 0.2  # anterior on the left
    spine_rows, spine_cols = np.nonzero(sagittal == SPINE)
    assert len(set(spine_rows)) > Z // 2 and len(set(spine_cols)) == 1  # in profile
    assert not (sagittal == LEFT).any()


def test_aspect_keeps_millimetres_square_and_the_centre_follows_the_mask():
    v = phantom()
    aspects = {w.name: w.aspect for w in orthogonal_views(v, (0, 0, 0), (3.0, 0.5, 0.8))}
    assert aspects == {"axial": 0.5 / 0.8, "coronal": 3.0 / 0.8, "sagittal": 3.0 / 0.5}
    mask = np.zeros_like(v, bool)
    mask[10:13, 5, 40:45] = True
    assert view_centre(mask) == (11, 5, 42)
    assert view_centre(np.zeros((4, 6, 8), bool)) == (2, 3, 4)
