from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from orgseg import __version__
from orgseg.cli import main
from orgseg.io import read_volume


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize(("user_setting", "huge_pages"), [(None, False), ("1", True)])
def test_an_orgseg_process_advises_no_huge_pages_unless_the_user_says(user_setting, huge_pages):
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if user_setting is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = user_setting
    code = (
        "from orgseg.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "import numpy._core.multiarray as m; print(m._get_madvise_hugepage())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split()[-1] == str(huge_pages)


def test_body_mask_and_crop_on_real_ct(tmp_path, real_ct_path, capsys):
    mask_url, crop_url = str(tmp_path / "mask.nii.gz"), str(tmp_path / "crop.nii.gz")
    rc = main(
        [
            "body-mask",
            "-i",
            str(real_ct_path),
            "-o",
            mask_url,
            "--crop-out",
            crop_url,
            "--margin-mm",
            "6",
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    ct, mask, cropped = read_volume(str(real_ct_path)), read_volume(mask_url), read_volume(crop_url)
    assert mask.same_grid(ct)  # written in the input's own geometry
    assert report["voxels"] == int(mask.array.sum()) > 0
    assert report["size_group"] == "adult"
    assert np.prod(cropped.shape) < np.prod(ct.shape)
    assert cropped.array.dtype == ct.array.dtype


def test_metrics_cli_writes_the_documented_json(tmp_path, real_seg_path):
    out = tmp_path / "m.json"
    rc = main(
        [
            "metrics",
            "--pred",
            str(real_seg_path),
            "--ref",
            str(real_seg_path),
            "-o",
            str(out),
            "--labels",
            "liver=5",
            "spleen=1",
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data) == {"liver", "spleen"}
    assert set(data["liver"]) == {"dice", "jaccard", "msd_mm", "hd_mm", "hd95_mm", "vd_ml"}
    assert data["liver"]["dice"] == 1.0 and data["liver"]["hd_mm"] == 0.0


def test_metrics_cli_rejects_bad_labels_and_grids(tmp_path, real_seg_path, real_ct_path, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "metrics",
                "--pred",
                str(real_seg_path),
                "--ref",
                str(real_seg_path),
                "-o",
                str(tmp_path / "m.json"),
                "--labels",
                "liver",
            ]
        )
    assert "NAME=ID" in capsys.readouterr().err
    dicom_seg = str(real_seg_path).replace("example_seg", "example_seg_dicom")
    rc = main(
        [
            "metrics",
            "--pred",
            dicom_seg,
            "--ref",
            str(real_seg_path),
            "-o",
            str(tmp_path / "m.json"),
        ]
    )
    assert rc == 2
    assert "same voxel grid" in capsys.readouterr().err


def test_phantoms_cli_writes_a_registered_multi_source_set(tmp_path, capsys):
    rc = main(
        ["phantoms", "-o", str(tmp_path / "ph"), "--sources", "2", "--cases", "2", "--seed", "3"]
    )
    assert rc == 0
    from orgseg.sources.registry import load_registry

    reg = load_registry((tmp_path / "ph" / "sources.yaml").read_text())
    assert reg.names() == ("phantom_src1", "phantom_src2")
    src = reg["phantom_src1"]
    lab = read_volume(
        str(tmp_path / "ph" / "phantom_src1" / "labelsTr" / "phantom_src1_000.nii.gz")
    )
    present = set(np.unique(lab.array)) - {0}
    assert present <= {v for vs in src.labels.values() for v in vs}
    assert (tmp_path / "ph" / "phantom_src1" / "test_cases.txt").read_text().split() == [
        "phantom_src1_001"
    ]


def test_missing_input_is_one_clear_line(tmp_path, capsys):
    rc = main(["body-mask", "-i", str(tmp_path / "none.nii.gz"), "-o", str(tmp_path / "m.nii.gz")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_bulk_refuses_an_unknown_model_before_planning_but_a_dry_run_plans(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("ORGSEG_MODELS", str(tmp_path / "models"))
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    from orgseg.core.volume import Volume
    from orgseg.io import write_volume

    ct = Volume(np.full((4, 8, 8), -1000, np.int16), spacing_mm=(2.0, 1.0, 1.0))
    write_volume(ct, str(archive / "case1.nii.gz"))
    rc = main(["bulk", "-i", str(archive), "-o", str(out), "--model", "no-such-set"])
    assert rc == 2
    assert "neither a model folder nor a model set" in capsys.readouterr().err
    assert not out.exists()  # nothing planned for a run that cannot start
    rc = main(["bulk", "-i", str(archive), "-o", str(out), "--model", "no-such-set",
               "--dry-run"])  # fmt: skip
    assert rc == 0 and "1 to segment" in capsys.readouterr().out


def test_sources_cli_lists_registry(capsys):
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    assert "totalsegmentator" in out and "kits19" in out


def test_sources_cli_adds_a_registry_yaml(tmp_path, capsys):
    extra = tmp_path / "site.yaml"
    extra.write_text(
        "sources:\n  site_liver:\n    format: label_map\n    labels:\n      liver: 3\n"
    )
    assert main(["sources", "--registry", str(extra)]) == 0
    out = capsys.readouterr().out
    assert "site_liver" in out and "totalsegmentator" in out
    assert main(["sources", "--registry", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_segment_tile_batch_reaches_the_engine_and_a_bad_one_is_refused():
    from orgseg.cli import _segment_options, build_parser
    from orgseg.errors import ConfigError

    parser = build_parser()
    base = ["segment", "-i", "ct.nii.gz", "-o", "out", "--model", "m"]
    _, engine, _ = _segment_options(parser.parse_args(base))
    assert engine.tile_batch == 1  # bit-exact by default
    _, engine, _ = _segment_options(parser.parse_args([*base, "--tile-batch", "3"]))
    assert engine.tile_batch == 3
    with pytest.raises(ConfigError, match="tile_batch >= 1"):
        _segment_options(parser.parse_args([*base, "--tile-batch", "0"]))


def test_bulk_takes_executor_and_jobs_dir_from_its_profile_unless_flags_say(
    tmp_path, monkeypatch, phantom_model_dir
):
    """A fake submitter stands in for Slurm here; tests/cluster/test_bulk.py submits for real."""
    import orgseg.orchestrate.bulk_workload as slurm_bulk
    from orgseg.core.volume import Volume
    from orgseg.io import write_volume

    archive = tmp_path / "archive"
    archive.mkdir()
    ct = Volume(np.full((4, 8, 8), -1000, np.int16), spacing_mm=(2.0, 1.0, 1.0))
    write_volume(ct, str(archive / "case1.nii.gz"))
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        f"cluster:\n  executor: slurm\n  jobs_dir: {tmp_path / 'shared-jobs'}\n"
        "  default: {partition: cpu, account: lab}\n  stages:\n    bulk: {gpus_per_node: 1}\n"
    )
    calls = []

    def fake_submit_bulk(dest, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(kw)
        return ["11", "12"]

    monkeypatch.setattr(slurm_bulk, "submit_bulk", fake_submit_bulk)
    base = ["bulk", "-i", str(archive), "--model", str(phantom_model_dir),
            "--profile", str(profile)]  # fmt: skip
    assert main([*base, "-o", str(tmp_path / "out1")]) == 0
    assert calls[-1]["jobs_dir"] == str(tmp_path / "shared-jobs")
    r = calls[-1]["resources"]
    assert (r.partition, r.account, r.gpus_per_node) == ("cpu", "lab", 1)
    assert main([*base, "-o", str(tmp_path / "out2"), "--jobs-dir", str(tmp_path / "j")]) == 0
    assert calls[-1]["jobs_dir"] == str(tmp_path / "j")
    n = len(calls)
    assert main([*base, "-o", str(tmp_path / "out3"), "--executor", "local"]) in (0, 1)
    assert len(calls) == n  # --executor local overrules the profile: nothing submitted
    assert (tmp_path / "out3" / "manifest.csv").exists()
