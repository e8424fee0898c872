"""How nnU-Net's export brings logits back to the scan's grid, as seen from its plans
(shared by the whole-path predictor and the streamed sliding window)."""

from __future__ import annotations

from typing import Any


def slab_export_mode(p: Any, props: dict) -> str | None:
    """'linear' / 'nearest' (axis-0 interpolation) when the logits of nnU-Net predictor
    ``p`` can be brought back slab by slab exactly as nnU-Net's export does; None when its
    own export must run."""
    from nnunetv2.preprocessing.resampling.default_resampling import (
        determine_do_sep_z_and_axis,
    )

    cm = p.configuration_manager
    kwargs = dict(cm.configuration.get("resampling_fn_probabilities_kwargs", {}))
    if (
        list(p.plans_manager.transpose_forward) != [0, 1, 2]
        or p.label_manager.has_regions
        or cm.configuration.get("resampling_fn_probabilities") != "resample_data_or_seg_to_shape"
        or kwargs.get("order", 3) != 1
    ):
        return None
    separate, axis = determine_do_sep_z_and_axis(
        kwargs.get("force_separate_z"), cm.spacing, props["spacing"]
    )
    if not separate:
        return "linear"
    if axis == 0 and kwargs.get("order_z", 0) == 0:
        return "nearest"
    return None
