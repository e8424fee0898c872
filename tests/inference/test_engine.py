"""The chunked engine with an intensity-only test model (the real nnU-Net path is tested in
test_segment.py): chunking, in-plane body crop and blending must not change the labels."""

from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.volume import Volume
from orgseg.errors import ConfigError
from orgseg.inference.engine import EngineOptions, segment_volume
from orgseg.phantoms import make_phantom

# test model classes: 0 background, 1 soft tissue 150-300 HU, 2 bone > 400 HU
CENTRES_HU = np.array([-500.0, 220.0, 650.0])


class IntensityModel:
    """Per-voxel softmax over distances to class centre intensities; records its blocks."""

    n_classes = 3
    patch_extent_mm = (0.0, 0.0, 0.0)

    def __init__(self) -> None:
        self.lut = np.array([0, 7, 9], np.uint8)  # output ids differ from class indices
        self.blocks: list[tuple[int, int, int]] = []

    def probabilities(self, ct):
        d = -np.abs(ct[None].astype(np.float32) - CENTRES_HU[:, None, None, None]) / 50.0
        e = np.exp(d - d.max(axis=0))
        return (e / e.sum(axis=0)).astype(np.float32)

    def predict_slabs(self, ct, spacing_mm, *, slab_rows):
        self.blocks.append(ct.shape)
        for a in range(0, ct.shape[0], slab_rows):
            yield a, self.probabilities(ct[a : a + slab_rows])


def expected_labels(ct: np.ndarray) -> np.ndarray:
    model = IntensityModel()
    return model.lut[np.argmax(model.probabilities(ct), axis=0)]


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(61, 40, 44), spacing_mm=(5.0, 9.0, 9.0), seed=2)


@pytest.mark.parametrize(
    ("chunk_mm", "overlap_mm"), [(None, 50.0), (100.0, 50.0), (73.0, 20.0), (60.0, 0.0)]
)
def test_chunked_labels_equal_unchunked_inside_the_body(phantom, chunk_mm, overlap_mm):
    ct = Volume(phantom.ct_hu, spacing_mm=phantom.spacing_mm)
    model = IntensityModel()
    options = EngineOptions(chunk_mm=chunk_mm, overlap_mm=overlap_mm, half_precision_blend=False)
    seg = segment_volume(model, ct, options)
    assert seg.labels.shape == ct.shape and seg.labels.dtype == np.uint8
    want = np.where(seg.body, expected_labels(phantom.ct_hu), 0)
    np.testing.assert_array_equal(seg.labels, want)
    assert set(np.unique(seg.labels)) == {0, 7, 9}
    if chunk_mm is not None:
        longest = max(b[0] for b in model.blocks)
        assert longest <= round(chunk_mm / 5.0)  # the model never sees more than a chunk
        assert len(seg.chunks) > 1


def test_table_and_blanket_are_background_and_chunks_are_cropped_to_the_body(phantom):
    ct = Volume(phantom.ct_hu, spacing_mm=phantom.spacing_mm)
    model = IntensityModel()
    seg = segment_volume(model, ct, EngineOptions(chunk_mm=100.0, overlap_mm=50.0))
    objects_only = phantom.objects & ~phantom.body
    assert expected_labels(phantom.ct_hu)[objects_only].any()  # the model alone labels them
    assert not seg.labels[~seg.body].any()
    # only where the body contour touches them (its skin band) may an object voxel keep a label
    assert np.count_nonzero(seg.labels[objects_only]) < 0.05 * np.count_nonzero(
        expected_labels(phantom.ct_hu)[objects_only]
    )
    # every block is narrower than the full plane (the table rows are cut away)
    assert all(b[1] < ct.shape[1] for b in model.blocks)
    # organs sit inside the body: nothing of the phantom's organs is lost to the crop
    organ = phantom.labels > 0
    assert np.array_equal(seg.labels[organ] > 0, expected_labels(phantom.ct_hu)[organ] > 0)


def test_no_body_crop_keeps_the_whole_plane(phantom):
    ct = Volume(phantom.ct_hu, spacing_mm=phantom.spacing_mm)
    model = IntensityModel()
    seg = segment_volume(model, ct, EngineOptions(chunk_mm=None, body_crop=False))
    assert seg.body is None
    assert model.blocks == [ct.shape]
    np.testing.assert_array_equal(seg.labels, expected_labels(phantom.ct_hu))


def test_progress_is_reported_per_chunk(phantom):
    ct = Volume(phantom.ct_hu, spacing_mm=phantom.spacing_mm)
    seen = []
    seg = segment_volume(
        IntensityModel(),
        ct,
        EngineOptions(chunk_mm=80.0, overlap_mm=30.0),
        progress=lambda done, total: seen.append((done, total)),
    )
    n = len(seg.chunks)
    assert seen == [(i + 1, n) for i in range(n)]


def test_overlap_not_shorter_than_chunk_is_refused_where_chunks_blend(phantom):
    with pytest.raises(ConfigError, match="must exceed the overlap"):
        EngineOptions(mode="blend", chunk_mm=50.0, overlap_mm=50.0)
    # streaming a streamable model never uses the overlap: the options are fine ...
    stream = EngineOptions(chunk_mm=50.0, overlap_mm=50.0)
    # ... until a model that cannot stream falls back to blending chunks
    ct = Volume(phantom.ct_hu, spacing_mm=phantom.spacing_mm)
    with pytest.raises(ConfigError, match="must be shorter than the chunk"):
        segment_volume(IntensityModel(), ct, stream)


def test_chunks_are_never_shorter_than_the_network_patch(phantom):
    ct = Volume(phantom.ct_hu, spacing_mm=phantom.spacing_mm)
    model = IntensityModel()
    model.patch_extent_mm = (150.0, 0.0, 0.0)
    options = EngineOptions(chunk_mm=60.0, overlap_mm=20.0, half_precision_blend=False)
    seg = segment_volume(model, ct, options)
    assert min(c.length for c in seg.chunks) * 5.0 >= 150.0
    assert len(seg.chunks) == 2
    want = np.where(seg.body, expected_labels(phantom.ct_hu), 0)
    np.testing.assert_array_equal(seg.labels, want)


def test_blocks_are_never_narrower_than_the_network_patch(phantom):
    ct = Volume(phantom.ct_hu, spacing_mm=phantom.spacing_mm)
    model = IntensityModel()
    model.patch_extent_mm = (0.0, 300.0, 350.0)  # 33.3 and 38.9 voxels of 9 mm
    options = EngineOptions(chunk_mm=100.0, overlap_mm=30.0, half_precision_blend=False)
    seg = segment_volume(model, ct, options)
    assert all(b[1] >= 34 and b[2] >= 39 for b in model.blocks)
    want = np.where(seg.body, expected_labels(phantom.ct_hu), 0)
    np.testing.assert_array_equal(seg.labels, want)


def test_half_precision_blending_differs_only_at_near_ties(phantom):
    ct = Volume(phantom.ct_hu, spacing_mm=phantom.spacing_mm)
    opts = dict(chunk_mm=100.0, overlap_mm=50.0)
    full = segment_volume(IntensityModel(), ct, EngineOptions(**opts, half_precision_blend=False))
    half = segment_volume(IntensityModel(), ct, EngineOptions(**opts))
    assert np.count_nonzero(full.labels != half.labels) <= 1e-4 * full.labels.size
