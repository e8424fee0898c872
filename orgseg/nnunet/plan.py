"""Planning and preprocessing one dataset, and derived (smaller) network configurations."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from orgseg.errors import ConfigError, JobError
from orgseg.nnunet.env import NnunetPaths, nnunet_env, nnunet_output_to_log

log = logging.getLogger(__name__)

PLANS = "nnUNetPlans"
_MARKER = "orgseg_preprocessed.json"


def derived_configuration_name(
    base: str, features_scale: float, patch_size: Sequence[int] | None = None
) -> str:
    """``3d_fullres`` for scale 1 and the planned patch, else e.g. ``3d_fullres_fs0.5`` or
    ``3d_fullres_fs0.25_ps64x64x64``."""
    name = base if features_scale == 1.0 else f"{base}_fs{features_scale:g}"
    if patch_size is not None:
        name += "_ps" + "x".join(str(int(p)) for p in patch_size)
    return name


def add_scaled_configuration(
    plans: dict, base: str, features_scale: float, patch_size: Sequence[int] | None = None
) -> str:
    """Add a configuration inheriting ``base`` with fewer features per stage and/or another
    patch size (in place).

    Returns its name. Training a smaller network is then a matter of choosing this
    configuration, not a trainer subclass.
    """
    name = derived_configuration_name(base, features_scale, patch_size)
    if name == base:
        return base
    configs = plans["configurations"]
    if base not in configs:
        raise JobError(f"plans have no configuration {base!r}; they have {sorted(configs)}")
    arch = copy.deepcopy(configs[base]["architecture"])
    features = arch["arch_kwargs"]["features_per_stage"]
    arch["arch_kwargs"]["features_per_stage"] = [
        max(4, int(round(f * features_scale))) for f in features
    ]
    derived: dict = {"inherits_from": base, "architecture": arch}
    if patch_size is not None:
        strides = arch["arch_kwargs"]["strides"]
        divisor = [int(np.prod([s[a] for s in strides])) for a in range(len(patch_size))]
        if len(patch_size) != len(divisor) or any(p % d for p, d in zip(patch_size, divisor)):
            raise ConfigError(
                f"patch size {list(patch_size)} must have {len(divisor)} axes, each a "
                f"multiple of the network's total downsampling {divisor}"
            )
        derived["patch_size"] = [int(p) for p in patch_size]
    configs[name] = derived
    return name


def plan_and_preprocess(
    paths: NnunetPaths,
    dataset_id: int,
    *,
    configuration: str,
    features_scale: float,
    num_processes: int = 1,
    patch_size: Sequence[int] | None = None,
) -> str:
    """Fingerprint, plan and preprocess one dataset (skipped when already done).

    Returns the configuration name to train.
    """
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    with nnunet_env(paths):
        name = convert_id_to_dataset_name(dataset_id)
        folder = paths.preprocessed / name
        marker = folder / _MARKER
        target = derived_configuration_name(configuration, features_scale, patch_size)
        if marker.exists() and json.loads(marker.read_text()).get("configuration") == target:
            log.info("plan/preprocess %s: already done", name)
            return target
        log.info("plan/preprocess %s (%s)", name, target)
        with nnunet_output_to_log():
            extract_fingerprints(
                [dataset_id],
                num_processes=num_processes,
                check_dataset_integrity=True,
                clean=True,
                verbose=False,
            )
            plan_experiments([dataset_id])
            preprocess(
                [dataset_id],
                plans_identifier=PLANS,
                configurations=(configuration,),
                num_processes=(num_processes,),
                verbose=False,
            )
        plans_file = folder / f"{PLANS}.json"
        plans = json.loads(plans_file.read_text())
        add_scaled_configuration(plans, configuration, features_scale, patch_size)
        plans_file.write_text(json.dumps(plans, indent=2))
        marker.write_text(json.dumps({"configuration": target}))
        return target


def preprocessed_folder(paths: NnunetPaths, dataset_id: int) -> Path:
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    with nnunet_env(paths):
        return paths.preprocessed / convert_id_to_dataset_name(dataset_id)
