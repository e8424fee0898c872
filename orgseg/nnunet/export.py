"""How nnU-Net's export brings logits back to the scan's grid, as seen from its plans
(shared by the whole-path predictor and the streamed sliding window)."""

from __future__ import annotations

from collections.abc import Sequence

from orgseg.nnunet.folder import FolderPlan, separate_z


def slab_export_mode(model: FolderPlan, spacing_mm: Sequence[float]) -> str | None:
    """'linear' / 'nearest' (axis-0 interpolation) when the logits of model folder
    ``model`` can be brought back to a scan of ``spacing_mm`` slab by slab exactly as
    nnU-Net's export does; None when its own export must run."""
    conf = model.configuration
    kwargs = dict(conf.get("resampling_fn_probabilities_kwargs", {}))
    if (
        list(model.transpose_forward) != [0, 1, 2]
        or model.has_regions
        or conf.get("resampling_fn_probabilities") != "resample_data_or_seg_to_shape"
        or kwargs.get("order", 3) != 1
    ):
        return None
    separate, axis = separate_z(kwargs.get("force_separate_z"), model.spacing_mm, spacing_mm)
    if not separate:
        return "linear"
    if axis == 0 and kwargs.get("order_z", 0) == 0:
        return "nearest"
    return None
