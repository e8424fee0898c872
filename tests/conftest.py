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
