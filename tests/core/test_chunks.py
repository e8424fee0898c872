from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.chunks import SlabBlender, chunk_weights, plan_chunks
from orgseg.errors import ConfigError, InvariantError


@pytest.mark.parametrize("n", [1, 7, 40, 41, 99, 100, 101, 333])
@pytest.mark.parametrize(
    ("spacing", "chunk_mm", "overlap_mm"),
    [(1.5, 120.0, 50.0), (0.8, 60.0, 10.0), (5.0, 200.0, 50.0), (2.0, 30.0, 0.0)],
)
def test_chunks_cover_every_slice_and_weights_sum_to_one(n, spacing, chunk_mm, overlap_mm):
    chunks = plan_chunks(n, spacing_mm=spacing, chunk_mm=chunk_mm, overlap_mm=overlap_mm)
    length = max(1, round(chunk_mm / spacing))
    assert chunks[0].start == 0 and chunks[-1].stop == n
    lengths = {c.length for c in chunks}
    assert len(lengths) == 1 and max(lengths) <= min(length, n)  # even, never longer
    overlap = int(np.ceil(overlap_mm / spacing - 1e-9))
    if len(chunks) > 1:  # not more chunks than needed
        assert (len(chunks) - 1) * (length - overlap) + length < n + (length - overlap)
    for a, b in zip(chunks, chunks[1:]):
        assert a.start < b.start
        assert (a.stop - b.start) * spacing >= overlap_mm - 1e-6  # overlap honoured
        assert a.stop - b.start <= overlap + 1  # ... and not much more
        assert a.final_stop == b.start
    assert chunks[-1].final_stop == n
    total = np.zeros(n)
    for c, w in zip(chunks, chunk_weights(chunks)):
        assert w.shape == (c.length,) and np.all(w > 0)
        total[c.start : c.stop] += w
    np.testing.assert_allclose(total, 1.0)
    # finalised slabs tile the scan exactly once
    finals = np.concatenate(
        [
            np.arange(a.final_stop if i else 0, b)
            for i, (a, b) in enumerate(zip([None] + chunks[:-1], [c.final_stop for c in chunks]))
        ]
    )
    assert finals.tolist() == list(range(n))


def test_weights_fall_off_towards_chunk_edges():
    chunks = plan_chunks(100, spacing_mm=1.0, chunk_mm=60, overlap_mm=20)
    w0, w1 = chunk_weights(chunks)
    overlap = slice(chunks[1].start - chunks[0].start, chunks[0].length)
    assert np.all(np.diff(w0[overlap]) < 0) and np.all(
        np.diff(w1[: chunks[0].stop - chunks[1].start]) > 0
    )
    assert w0[0] == 1.0 and w1[-1] == 1.0  # the scan's own ends are not chunk edges


def test_overlap_must_be_shorter_than_chunk():
    with pytest.raises(ConfigError, match="shorter than the chunk"):
        plan_chunks(100, spacing_mm=1.0, chunk_mm=20, overlap_mm=20)
    with pytest.raises(ConfigError):
        plan_chunks(0, spacing_mm=1.0, chunk_mm=20)


@pytest.mark.parametrize(
    ("n", "chunk_mm", "overlap_mm"), [(57, 20.0, 6.0), (10, 40.0, 5.0), (100, 30.0, 0.0)]
)
def test_blending_consistent_chunks_equals_unchunked_argmax(n, chunk_mm, overlap_mm):
    rng = np.random.default_rng(n)
    probs = rng.random((4, n, 3, 5)).astype(np.float32)
    chunks = plan_chunks(n, spacing_mm=1.0, chunk_mm=chunk_mm, overlap_mm=overlap_mm)
    blender = SlabBlender(chunks, n_classes=4, plane_shape=(3, 5))
    out = np.full((n, 3, 5), 255, np.uint8)
    longest_buffer = 0
    for i, c in enumerate(chunks):
        for start, stop, labels in blender.add(i, probs[:, c.start : c.stop]):
            assert np.all(out[start:stop] == 255), "a slab was written twice"
            out[start:stop] = labels
        longest_buffer = max(longest_buffer, blender.pending_rows)
    np.testing.assert_array_equal(out, np.argmax(probs, axis=0))
    overlap = max((a.stop - b.start for a, b in zip(chunks, chunks[1:])), default=0)
    assert longest_buffer <= overlap  # only rows shared with the next chunk are held back


def test_blending_weights_favour_the_chunk_centre():
    chunks = plan_chunks(8, spacing_mm=1.0, chunk_mm=6, overlap_mm=4)
    blender = SlabBlender(chunks, n_classes=2, plane_shape=(1, 1))
    a = np.zeros((2, 6, 1, 1), np.float32)
    a[1] = 1.0  # chunk 0 votes class 1 everywhere
    b = np.zeros((2, 6, 1, 1), np.float32)
    b[0] = 1.0  # chunk 1 votes class 0 everywhere
    slabs = blender.add(0, a) + blender.add(1, b)
    labels = np.concatenate([s[2] for s in slabs]).ravel().tolist()
    # near chunk 0's centre its vote wins, near chunk 1's centre chunk 1 wins
    assert labels[:3] == [1, 1, 1] and labels[-3:] == [0, 0, 0]
    with pytest.raises(InvariantError, match="in order"):
        SlabBlender(chunks, n_classes=2, plane_shape=(1, 1)).add(1, b)


def test_chunk_cropped_in_plane_counts_as_background_outside_its_rectangle():
    rng = np.random.default_rng(3)
    n, plane = 30, (6, 7)
    chunks = plan_chunks(n, spacing_mm=2.0, chunk_mm=24, overlap_mm=8)
    full = SlabBlender(chunks, n_classes=3, plane_shape=plane)
    cropped = SlabBlender(chunks, n_classes=3, plane_shape=plane)
    boxes = [(slice(1, 5), slice(2, 7)), (slice(0, 3), slice(0, 4)), (slice(2, 6), slice(1, 6))]
    out_full = np.zeros((n, *plane), np.uint8)
    out_cropped = np.zeros((n, *plane), np.uint8)
    for i, c in enumerate(chunks):
        ys, xs = boxes[i % len(boxes)]
        inner = rng.dirichlet(np.ones(3), size=(c.length, ys.stop - ys.start, xs.stop - xs.start))
        inner = np.moveaxis(inner, -1, 0).astype(np.float32)
        padded = np.zeros((3, c.length, *plane), np.float32)
        padded[0] = 1.0
        padded[:, :, ys, xs] = inner
        for a, b, lab in full.add(i, padded):
            out_full[a:b] = lab
        for a, b, lab in cropped.add(i, inner, plane_start=(ys.start, xs.start)):
            out_cropped[a:b] = lab
    np.testing.assert_array_equal(out_cropped, out_full)
    assert out_full.any()  # the rectangles did predict foreground somewhere


def test_chunk_rectangle_must_fit_the_plane():
    chunks = plan_chunks(4, spacing_mm=1.0, chunk_mm=10)
    blender = SlabBlender(chunks, n_classes=2, plane_shape=(3, 3))
    with pytest.raises(InvariantError, match="fitting a"):
        blender.add(0, np.zeros((2, 4, 2, 2), np.float32), plane_start=(2, 0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunks_added_as_slabs_blend_like_whole_chunks(seed):
    rng = np.random.default_rng(seed)
    n = 83
    chunks = plan_chunks(n, spacing_mm=1.5, chunk_mm=45, overlap_mm=20)
    probs = [rng.random((3, c.length, 2, 4)).astype(np.float32) for c in chunks]
    whole = SlabBlender(chunks, n_classes=3, plane_shape=(2, 4))
    slabs = SlabBlender(chunks, n_classes=3, plane_shape=(2, 4))
    out_whole = np.full((n, 2, 4), 255, np.uint8)
    out_slabs = np.full((n, 2, 4), 255, np.uint8)
    for i, c in enumerate(chunks):
        for a, b, lab in whole.add(i, probs[i]):
            out_whole[a:b] = lab
        row = 0
        while row < c.length:
            size = int(rng.integers(1, 9))
            for a, b, lab in slabs.add(i, probs[i][:, row : row + size], row_start=row):
                assert np.all(out_slabs[a:b] == 255), "a slab was written twice"
                out_slabs[a:b] = lab
            row += min(size, c.length - row)
    np.testing.assert_array_equal(out_slabs, out_whole)
    assert not np.any(out_slabs == 255)


def test_rows_of_a_chunk_must_come_in_order():
    chunks = plan_chunks(10, spacing_mm=1.0, chunk_mm=6, overlap_mm=2)
    blender = SlabBlender(chunks, n_classes=2, plane_shape=(1, 1))
    blender.add(0, np.ones((2, 3, 1, 1), np.float32))
    with pytest.raises(InvariantError, match="expected chunk 0 row 3"):
        blender.add(0, np.ones((2, 2, 1, 1), np.float32), row_start=4)
    with pytest.raises(InvariantError, match="expected chunk 0 row 3"):
        blender.add(1, np.ones((2, 6, 1, 1), np.float32))


@pytest.mark.parametrize("n", [257, 300, 420, 600, 1000])
def test_chunks_are_never_shorter_than_the_minimum(n):
    chunks = plan_chunks(n, spacing_mm=1.5, chunk_mm=150, overlap_mm=50, min_chunk_mm=384)
    assert all(c.length >= 256 for c in chunks)
    assert chunks[-1].stop == n
    for a, b in zip(chunks, chunks[1:]):
        assert 34 <= a.stop - b.start <= 35  # the overlap asked for, not a shifted-back chunk
