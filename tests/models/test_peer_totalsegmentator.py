"""orgseg's ``--model totalsegmentator-total`` against TotalSegmentator 2.18.0's own CLI on
the same five parts (its released layout, built from the phantom model), offline.

The full-size comparison (512x512x600, memory and time) is ``benchmarks/pretrained.py``."""

from __future__ import annotations

import numpy as np
import pytest

from orgseg.cli import main
from orgseg.core.body import body_mask
from orgseg.core.metrics import dice
from orgseg.core.volume import Volume
from orgseg.io import read_volume, write_volume
from orgseg.models.registry import model_registry
from orgseg.phantoms import make_phantom
from tests.models.peers import run_totalsegmentator

pytestmark = [pytest.mark.slow, pytest.mark.nnunet]


def test_native_classes_agree_with_totalsegmentators_own_merged_output(
    ts_weights, tmp_path, monkeypatch
):
    # off TotalSegmentator's 1.5 mm grid: both resample it (the same field of view as a
    # 144x224x224 scan at 1.5 mm)
    ph = make_phantom(shape=(108, 280, 280), spacing_mm=(2.0, 1.2, 1.2), seed=104)
    ct = tmp_path / "ct.nii.gz"
    write_volume(Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), str(ct))
    ts_out = tmp_path / "ts.nii.gz"
    run_totalsegmentator(ct, ts_out, ts_weights, tmp_path / "tshome")

    monkeypatch.setenv("ORGSEG_MODELS", str(tmp_path / "models"))
    assert main(["models", "import", "totalsegmentator-total", str(ts_weights)]) == 0
    out = tmp_path / "orgseg"
    assert main(["segment", "-i", str(ct), "-o", str(out), "--model",
                 "totalsegmentator-total", "--ml"]) == 0  # fmt: skip

    ours = np.asarray(read_volume(str(out / "ct" / "segmentation.nii.gz")).array)
    theirs = np.asarray(read_volume(str(ts_out)).array)
    body = body_mask(ph.ct_hu, spacing_mm=ph.spacing_mm)
    ids = set(np.unique(theirs[body]).tolist()) - {0}
    assert set(np.unique(ours).tolist()) - {0} == ids  # the same classes under the same ids
    assert len(ids) == 4
    names = model_registry()["totalsegmentator-total"].classes
    for cid in sorted(ids):
        d = dice(ours[body] == cid, theirs[body] == cid)
        assert d >= 0.99, (names[cid - 1], d)
