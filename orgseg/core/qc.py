"""Unsupervised quality figures of one pseudo-label mask, and the flags they raise.

Nobody checks ~100,000 pseudo-labels by eye. Each mask gets figures that need no ground
truth (:class:`MaskFigures`): how much its ensemble's folds agree, how plausible its
volume is against the manual masks of that organ, how fragmented it is, and how much of
it lies outside the body; :func:`flags` turns them into reasons against thresholds
(:class:`QCThresholds`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from orgseg.core.body import PackedMask
from orgseg.core.crop import bounding_box
from orgseg.errors import DataContractError

#: organs that are two structures in the body (their mask is two components)
PAIRED_ORGANS = frozenset(
    {"lungs", "kidneys", "adrenal_glands", "femoral_heads", "hips", "eyeballs", "clavicles"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class QCThresholds:
    """A mask is flagged when any figure is past its threshold."""

    #: mean pairwise Dice of the folds' masks below this
    min_fold_agreement: float = 0.85
    #: |robust z-score| of the volume against the organ's manual masks above this
    max_volume_z: float = 4.0
    #: share of the mask outside its largest component(s) above this
    max_fragmented_share: float = 0.05
    #: share of the mask outside the body contour above this
    max_outside_body_share: float = 0.01
    #: a mask smaller than this (ml) is taken as empty
    min_volume_ml: float = 1.0
    #: leave an ensemble's collapsed folds (:func:`collapsed_folds`) out of its masks'
    #: fold agreement: a fold that learned nothing says nothing about a mask (it is
    #: reported instead); without it, good masks of an ensemble with a collapsed fold are
    #: flagged (benchmarks/pseudo_qc.py, docs/benchmarks.md)
    exclude_collapsed_folds: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskFigures:
    volume_ml: float
    fold_agreement: float | None  # None: a single fold
    volume_z: float | None  # None: no manual masks of the organ to compare with
    fragmented_share: float
    outside_body_share: float | None  # None: no body contour

    def as_dict(self) -> dict[str, float | None]:
        return {k: (None if v is None else round(float(v), 4)) for k, v in asdict(self).items()}


def fragmented_share(mask: np.ndarray, *, components: int = 1) -> float:
    """Share of the mask's voxels outside its ``components`` largest connected components
    (26-connectivity); 0 for an empty mask."""
    total = int(np.count_nonzero(mask))
    if total == 0:
        return 0.0
    # components never leave the mask's bounding box: label only that
    box = bounding_box(mask).slices
    labelled, n = ndimage.label(mask[box], structure=np.ones((3, 3, 3), bool))
    if n <= components:
        return 0.0
    sizes = np.bincount(labelled.ravel())[1:]
    kept = int(np.sort(sizes)[::-1][:components].sum())
    return (total - kept) / total


def outside_share(mask: np.ndarray, body: np.ndarray | PackedMask) -> float:
    """Share of the mask's voxels outside ``body`` (a bool array, or packed bits: then
    the mask is packed too, and the body never unpacked); 0 for an empty mask."""
    if tuple(mask.shape) != tuple(body.shape):
        raise DataContractError(f"mask {mask.shape} and body {body.shape} differ in shape")
    total = int(np.count_nonzero(mask))
    if total == 0:
        return 0.0
    if isinstance(body, PackedMask):  # pad bits: 0 in the packed mask, so never counted
        outside = np.packbits(mask.view(bool), axis=-1) & ~body.bits
        return int(np.unpackbits(outside).sum()) / total
    return int(np.count_nonzero(mask & ~body)) / total


def robust_z(value: float, reference: Sequence[float]) -> float | None:
    """(value - median) / (1.4826 x MAD) of ``reference``; None with fewer than 3
    reference values or no spread (then nothing can be called implausible)."""
    ref = np.asarray(reference, dtype=float)
    if ref.size < 3:
        return None
    med = float(np.median(ref))
    mad = 1.4826 * float(np.median(np.abs(ref - med)))
    if mad <= 0:
        return None
    return (float(value) - med) / mad


def fold_pairs(n: int) -> list[tuple[int, int]]:
    """The pairs of ``n`` folds in the order their overlaps are kept: (0, 1), (0, 2), ...,
    (1, 2), ..."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def fold_agreement(fold_voxels: Sequence[int], overlaps: Mapping[tuple[int, int], int]) -> float:
    """Mean pairwise Dice of the folds' masks, from each fold's voxel count and each
    pair's overlap (``overlaps[(i, j)]``, i < j). Two empty masks agree (Dice 1)."""
    n = len(fold_voxels)
    if n < 2:
        raise DataContractError(f"fold agreement needs 2 or more folds, got {n}")
    dice = []
    for i in range(n):
        for j in range(i + 1, n):
            both = fold_voxels[i] + fold_voxels[j]
            dice.append(1.0 if both == 0 else 2.0 * overlaps[(i, j)] / both)
    return float(np.mean(dice))


def collapsed_folds(
    fold_voxels: Iterable[Sequence[int]],
    *,
    vanish_share: float = 0.1,
    min_cases: int = 3,
    min_rate: float = 0.5,
) -> dict[int, tuple[int, int]]:
    """Folds of one organ's ensemble that predict (nearly) nothing where the others find
    the organ: a model problem (a fold that did not learn), not a mask problem.

    ``fold_voxels``: per case (those whose ensemble mask holds the organ), each fold's
    voxel count (fold positions as the ensemble holds them). A fold *vanishes* in a
    case when it has under ``vanish_share`` of the other folds' median count while that
    median is non-zero; it is collapsed when it vanishes in at least ``min_rate`` of the
    ``min_cases`` or more cases it can be compared in. Returns fold position -> (cases
    vanished, cases compared).

    >>> collapsed_folds([(900, 0), (1200, 3), (800, 0), (0, 0)])
    {1: (3, 3)}
    """
    vanished: dict[int, int] = {}
    compared: dict[int, int] = {}
    for counts in fold_voxels:
        for f, own in enumerate(counts):
            others = [v for g, v in enumerate(counts) if g != f]
            ref = float(np.median(others)) if others else 0.0
            if ref <= 0:
                continue
            compared[f] = compared.get(f, 0) + 1
            vanished[f] = vanished.get(f, 0) + int(own < vanish_share * ref)
    return {
        f: (vanished[f], n)
        for f, n in sorted(compared.items())
        if n >= min_cases and vanished[f] >= min_rate * n
    }


def collapse_note(folds: Mapping[int, tuple[int, int]]) -> str:
    """What :func:`collapsed_folds` found, in words ("" for none)."""
    return ", ".join(f"fold {f} predicts nothing in {k}/{n} cases" for f, (k, n) in folds.items())


def agreement_without(
    agreement: float | None,
    fold_voxels: Sequence[int],
    overlaps: Sequence[int] | None,
    excluded: Iterable[int],
) -> float | None:
    """A mask's fold ``agreement`` with the ``excluded`` folds left out, from its folds'
    voxel counts and each pair's ``overlaps`` ((0, 1), (0, 2), ..., (1, 2) order): None
    when fewer than two folds are left; ``agreement`` unchanged when nothing is excluded
    or the counts needed are not there (a record from before they were kept).

    >>> agreement_without(0.0, [900, 0], [0], excluded=[1]) is None
    True
    >>> agreement_without(0.6, [900, 0, 900], [0, 900, 0], excluded=[1])
    1.0
    """
    out = set(excluded) & set(range(len(fold_voxels)))
    if not out:
        return agreement
    keep = [f for f in range(len(fold_voxels)) if f not in out]
    if len(keep) < 2:
        return None
    pairs = fold_pairs(len(fold_voxels))
    if overlaps is None or len(overlaps) != len(pairs):
        return agreement
    by_pair = dict(zip(pairs, overlaps, strict=True))
    sub = {
        (a, b): by_pair[(keep[a], keep[b])]
        for a in range(len(keep))
        for b in range(a + 1, len(keep))
    }
    return fold_agreement([fold_voxels[f] for f in keep], sub)


class FoldAgreement:
    """Per class, each fold's voxel count and each pair of folds' overlap, added up a
    block at a time while an ensemble predicts (no second pass, no per-fold volumes)."""

    def __init__(self) -> None:
        self.voxels: dict[int, list[int]] = {}
        self.overlaps: dict[int, dict[tuple[int, int], int]] = {}
        self.folds = 0

    def add(self, fold_labels: Sequence[np.ndarray]) -> None:
        """One block's class map from each fold (same shape, class indices)."""
        n = len(fold_labels)
        if self.folds and n != self.folds:
            raise DataContractError(f"expected {self.folds} folds' blocks, got {n}")
        self.folds = n
        present = np.unique(np.concatenate([np.unique(f) for f in fold_labels]))
        for c in (int(v) for v in present if v > 0):
            masks = [f == c for f in fold_labels]
            counts = self.voxels.setdefault(c, [0] * n)
            pairs = self.overlaps.setdefault(c, {})
            for i in range(n):
                counts[i] += int(np.count_nonzero(masks[i]))
                for j in range(i + 1, n):
                    pairs[(i, j)] = pairs.get((i, j), 0) + int(
                        np.count_nonzero(masks[i] & masks[j])
                    )

    def per_class(self) -> dict[int, float]:
        """class index -> mean pairwise Dice of the folds (classes no fold predicted are
        absent: the folds agree there)."""
        if self.folds < 2:
            return {}
        return {c: fold_agreement(self.voxels[c], self.overlaps[c]) for c in sorted(self.voxels)}

    def per_fold_voxels(self) -> dict[int, tuple[int, ...]]:
        """class index -> each fold's voxel count (classes no fold predicted are absent)."""
        return {c: tuple(self.voxels[c]) for c in sorted(self.voxels)}

    def per_pair_overlaps(self) -> dict[int, tuple[int, ...]]:
        """class index -> each pair of folds' overlap, in (0, 1), (0, 2), ..., (1, 2) order."""
        pairs = fold_pairs(self.folds)
        return {c: tuple(self.overlaps[c].get(p, 0) for p in pairs) for c in sorted(self.voxels)}


def mask_figures(
    mask: np.ndarray,
    *,
    voxel_ml: float,
    organ: str,
    body: np.ndarray | PackedMask | None,
    reference_ml: Sequence[float],
    agreement: float | None,
) -> MaskFigures:
    """Every figure of one mask (``reference_ml``: the organ's manual-mask volumes in
    the same size group)."""
    volume = float(np.count_nonzero(mask)) * voxel_ml
    return MaskFigures(
        volume_ml=volume,
        fold_agreement=agreement,
        volume_z=robust_z(volume, reference_ml),
        fragmented_share=fragmented_share(mask, components=2 if organ in PAIRED_ORGANS else 1),
        outside_body_share=None if body is None else outside_share(mask, body),
    )


def flags(
    figures: MaskFigures,
    thresholds: QCThresholds,
    *,
    expected: bool = True,
    collapse_note: str = "",
) -> list[str]:
    """The reasons a mask is not trusted (empty: trusted). ``expected``: the organ should
    be in this scan's field of view (then an empty mask is a reason too).
    ``collapse_note``: the organ's collapsed folds in words (:func:`collapse_note`), added
    to a disagreement so a person retrains that fold rather than rejects its masks."""
    out = []
    t = thresholds
    if expected and figures.volume_ml < t.min_volume_ml:
        out.append(f"empty ({figures.volume_ml:.1f} ml) though expected in the field of view")
    if figures.fold_agreement is not None and figures.fold_agreement < t.min_fold_agreement:
        why = f"; {collapse_note}" if collapse_note else ""
        out.append(f"folds disagree (mean pairwise Dice {figures.fold_agreement:.3f}{why})")
    if figures.volume_z is not None and abs(figures.volume_z) > t.max_volume_z:
        out.append(f"implausible volume (robust z {figures.volume_z:+.1f})")
    if figures.fragmented_share > t.max_fragmented_share:
        out.append(f"fragmented ({figures.fragmented_share:.1%} outside the main component)")
    if figures.outside_body_share is not None and (
        figures.outside_body_share > t.max_outside_body_share
    ):
        out.append(f"outside the body ({figures.outside_body_share:.1%})")
    return out


def in_field_of_view(levels: tuple[int, int], others: Iterable[tuple[int, int]]) -> bool:
    """Whether a scan holds an organ spanning body ``levels`` (head 0 to thigh 7): some
    other organ found in it starts above the organ's top level and some ends below its
    bottom one, so the scan reaches past both ends.

    >>> in_field_of_view((3, 4), [(2, 3), (6, 6)])  # liver, between lungs and bladder
    True
    >>> in_field_of_view((3, 4), [(2, 3), (3, 4)])  # a chest scan: the liver may be cut
    False
    """
    seen = list(others)
    return any(o[0] < levels[0] for o in seen) and any(o[1] > levels[1] for o in seen)


def severity(figures: MaskFigures, thresholds: QCThresholds, *, expected: bool = True) -> float:
    """How far the mask's worst figure is past its threshold (1: at it; above 1 it is
    flagged), for ranking the masks a person should look at first."""
    t = thresholds
    parts = [figures.fragmented_share / max(t.max_fragmented_share, 1e-9)]
    if expected and figures.volume_ml < t.min_volume_ml:
        parts.append(10.0)
    if figures.fold_agreement is not None:
        parts.append((1.0 - figures.fold_agreement) / max(1.0 - t.min_fold_agreement, 1e-9))
    if figures.volume_z is not None:
        parts.append(abs(figures.volume_z) / max(t.max_volume_z, 1e-9))
    if figures.outside_body_share is not None:
        parts.append(figures.outside_body_share / max(t.max_outside_body_share, 1e-9))
    return float(max(parts))
