from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data" / "totalseg_example"


@pytest.fixture(scope="session")
def real_ct_path() -> Path:
    """The small real CT (3 mm, upper abdomen, table visible), Apache-2.0, see its notice."""
    return DATA / "example_ct_sm.nii.gz"


@pytest.fixture(scope="session")
def real_seg_path() -> Path:
    return DATA / "example_seg.nii.gz"


@pytest.fixture(scope="session")
def real_dicom_dir() -> Path:
    return DATA / "example_ct_dicom"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def small_phantom():
    from orgseg.phantoms import make_phantom

    return make_phantom(seed=7)


#: organs of the briefly trained phantom model the inference tests share
PHANTOM_MODEL_ORGANS = ("heart", "liver", "lungs", "vertebrae")


@pytest.fixture(scope="session")
def phantom_model_dir(tmp_path_factory) -> Path:
    """A real nnU-Net model trained briefly on phantoms (about two minutes on 2 cores).

    The patch is shorter than the scan (24 of 48 slices): the network learns from partial
    views, as real models do."""
    import dataclasses

    from orgseg.pipeline.phantom_model import PhantomModelConfig, train_phantom_model

    return train_phantom_model(
        tmp_path_factory.mktemp("phantom_model"),
        PhantomModelConfig(
            organs=PHANTOM_MODEL_ORGANS,
            patch_size=(24, 48, 48),
            training=dataclasses.replace(PhantomModelConfig().training, epochs=8),
        ),
    )


@pytest.fixture(scope="session")
def ts_weights(phantom_model_dir, tmp_path_factory) -> Path:
    """TotalSegmentator's weights folder layout: the five ``total`` parts built from the
    phantom model (tests/models/layouts.py)."""
    from orgseg.models.registry import model_registry
    from tests.models import layouts

    root = tmp_path_factory.mktemp("ts_weights")
    layouts.totalsegmentator_parts(
        phantom_model_dir, root, model_registry()["totalsegmentator-total"]
    )
    return root


@pytest.fixture(scope="session")
def public_releases(tmp_path_factory):
    """Replicas of every public release layout the registry knows (tests/sources/replicas.py):
    (data root, {registry name: Replica})."""
    from orgseg.sources.registry import builtin_registry
    from tests.sources import replicas

    builders = {
        "totalsegmentator": replicas.totalsegmentator,
        "lits": replicas.lits,
        "kits19": replicas.kits19,
        "ct_org": replicas.ct_org,
        "msd_task03_liver": lambda r, g: replicas.msd(
            r, g, "Task03_Liver", "msd_task03_liver", [1, 2]
        ),
        "msd_task07_pancreas": lambda r, g: replicas.msd(
            r, g, "Task07_Pancreas", "msd_task07_pancreas", [1, 2, 1]
        ),
        "msd_task09_spleen": lambda r, g: replicas.msd(
            r, g, "Task09_Spleen", "msd_task09_spleen", [1]
        ),
        "verse": replicas.verse,
        "abdomenatlas": replicas.abdomenatlas,
        "paediatric": replicas.pediatric_ct_seg,
        "abdomenct_1k": replicas.abdomenct_1k,
        "amos22": replicas.amos22,
    }
    root = tmp_path_factory.mktemp("public")
    registry = builtin_registry()
    return root, {name: build(root, registry) for name, build in builders.items()}
