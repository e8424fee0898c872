"""Building nnU-Net datasets from the run's cropped cases (shared by both strategies)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from orgseg.catalog import ORGANS
from orgseg.config import RunConfig
from orgseg.core.splits import k_fold, stable_seed
from orgseg.core.volume import Volume
from orgseg.errors import ConfigError
from orgseg.io import read_volume, write_volume
from orgseg.io.storage import is_local, local_copy
from orgseg.nnunet.datasets import (
    dataset_name,
    image_path,
    label_path,
    make_dataset_json,
    verify_dataset,
    write_dataset_json,
    write_splits,
)
from orgseg.nnunet.env import nnunet_env
from orgseg.nnunet.plan import plan_and_preprocess
from orgseg.pipeline.layout import RunLayout

log = logging.getLogger(__name__)

STRATEGY2_OFFSET = 100
_BUILT = "orgseg_dataset.json"


def strategy1_dataset(config: RunConfig, organ: str) -> tuple[int, str]:
    """Deterministic id and folder name of an organ's binary dataset.

    Ids are ``dataset_id_base + catalog index``, whatever organs a run trains.
    """
    index = list(ORGANS).index(organ)
    dataset_id = config.nnunet.dataset_id_base + index
    return dataset_id, dataset_name(dataset_id, "".join(p.title() for p in organ.split("_")))


def strategy2_dataset(config: RunConfig) -> tuple[int, str]:
    dataset_id = config.nnunet.dataset_id_base + STRATEGY2_OFFSET
    return dataset_id, dataset_name(dataset_id, "Strategy2")


def _link_or_copy(src_url: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    if is_local(src_url):
        try:
            os.link(src_url, dst)
            return
        except OSError:
            pass
    with local_copy(src_url) as path:
        shutil.copyfile(path, dst)


def build_dataset(
    config: RunConfig,
    *,
    dataset_id: int,
    name: str,
    labels: Mapping[str, int],
    case_ids: Sequence[str],
    description: str,
    label_of: Callable[[str, Volume], np.ndarray] | None = None,
    label_url_of: Callable[[str], str] | None = None,
    ignore: bool = False,
    fingerprint: str = "",
) -> str:
    """Write, verify, plan and preprocess one nnU-Net dataset; write its CV splits.

    ``label_of(case_id, cropped_ct)`` returns the case's label array on the cropped grid;
    or ``label_url_of(case_id)`` names a label map already written on that grid with the
    dataset's ids (linked or copied as it is, never decoded).
    ``ignore``: the label maps hold nnU-Net's ignore label (one above ``labels``);
    ``fingerprint``: what else the label maps depend on (a change rebuilds the dataset).
    Returns the configuration name to train. Skipped (but re-planned if needed) when the
    same case list (and fingerprint) was already written.
    """
    layout = RunLayout.of(config)
    paths = layout.nnunet.make()
    folder = paths.raw / name
    if len(case_ids) < config.split.n_folds:
        raise ConfigError(
            f"{name}: {len(case_ids)} training case(s), fewer than the {config.split.n_folds} "
            "CV folds; add cases (or sources labelling this organ) or lower split.n_folds"
        )
    built = folder / _BUILT
    expected = {
        "cases": sorted(case_ids),
        "labels": dict(labels),
        **({"ignore": True} if ignore else {}),
        **({"fingerprint": fingerprint} if fingerprint else {}),
    }
    if not (built.exists() and json.loads(built.read_text()) == expected):
        if folder.exists():
            shutil.rmtree(folder)
        # a rebuilt dataset is preprocessed again (the old plan was made from other maps)
        shutil.rmtree(paths.preprocessed / name, ignore_errors=True)
        if (label_of is None) == (label_url_of is None):
            raise ValueError("build_dataset: give exactly one of label_of and label_url_of")
        for i, case_id in enumerate(sorted(case_ids), start=1):
            ct_url = layout.cropped_ct(case_id)
            _link_or_copy(ct_url, image_path(folder, case_id))
            if label_url_of is not None:
                _link_or_copy(label_url_of(case_id), label_path(folder, case_id))
            else:
                assert label_of is not None
                ct = read_volume(ct_url)
                write_volume(
                    ct.with_array(label_of(case_id, ct).astype(np.uint8)),
                    str(label_path(folder, case_id)),
                )
            if i % 10 == 0 or i == len(case_ids):
                log.info("%s: wrote %d/%d cases", name, i, len(case_ids))
        write_dataset_json(
            folder,
            make_dataset_json(
                labels=labels, n_training=len(case_ids), description=description, ignore=ignore
            ),
        )
        with nnunet_env(paths):
            verify_dataset(folder, num_processes=config.nnunet.num_processes)
        built.write_text(json.dumps(expected))
    configuration = plan_and_preprocess(
        paths,
        dataset_id,
        configuration=config.nnunet.configuration,
        features_scale=config.nnunet.features_scale,
        num_processes=config.nnunet.num_processes,
    )
    folds = k_fold(case_ids, n_folds=config.split.n_folds, seed=stable_seed(config.seed, name))
    write_splits(paths.preprocessed / name, folds)
    return configuration
