"""orgseg's storage layer against a real S3 HTTP endpoint (moto's server)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from orgseg.core.volume import Volume
from orgseg.io import exists, read_bytes, read_volume, write_bytes, write_volume
from orgseg.io.storage import list_files, sync_down, sync_up

pytestmark = pytest.mark.s3


def test_volumes_and_bytes_round_trip_through_s3(bucket):
    vol = Volume(np.arange(60, dtype=np.int16).reshape(3, 4, 5), spacing_mm=(2.0, 1.0, 1.5))
    write_volume(vol, f"{bucket}/a/ct.nii.gz")
    back = read_volume(f"{bucket}/a/ct.nii.gz")
    assert back.same_grid(vol) and np.array_equal(back.array, vol.array)
    write_bytes(f"{bucket}/a/x.json", b"{}")
    assert read_bytes(f"{bucket}/a/x.json") == b"{}"
    assert list_files(f"{bucket}/a") == [f"{bucket}/a/ct.nii.gz", f"{bucket}/a/x.json"]


def test_a_failed_write_leaves_nothing_visible(bucket):
    from orgseg.io.storage import atomic_local_path

    with pytest.raises(RuntimeError), atomic_local_path(f"{bucket}/b/out.json") as tmp:
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("killed mid-write")
    assert not exists(f"{bucket}/b/out.json")


def test_sync_up_skips_what_sync_down_brought_and_uploads_markers_last(bucket, tmp_path):
    src = tmp_path / "src"
    (src / "fold_0").mkdir(parents=True)
    (src / "fold_0" / "checkpoint_latest.pth").write_bytes(b"w" * 1000)
    (src / "fold_0" / "orgseg_unit.json").write_text("{}")
    uploaded = []
    import fsspec

    fs = fsspec.filesystem("s3")
    original = fs.put_file

    def recording(lpath, rpath, *a, **k):
        uploaded.append(rpath.rsplit("/", 1)[-1])
        return original(lpath, rpath, *a, **k)

    fs.put_file = recording  # the cached instance sync_up uses
    try:
        assert sync_up(str(src), f"{bucket}/nn") == 2
    finally:
        del fs.put_file
    assert uploaded == ["checkpoint_latest.pth", "orgseg_unit.json"]  # marker last

    dst = tmp_path / "dst"
    fetched = sync_down(f"{bucket}/nn", str(dst))
    assert set(fetched) == {"fold_0/checkpoint_latest.pth", "fold_0/orgseg_unit.json"}
    assert sync_up(str(dst), f"{bucket}/nn", unchanged=fetched) == 0  # nothing new
    (dst / "fold_0" / "checkpoint_final.pth").write_bytes(b"f")
    assert sync_up(str(dst), f"{bucket}/nn", unchanged=fetched) == 1
    only = sync_down(f"{bucket}/nn", str(tmp_path / "m"), only=("orgseg_unit.json",))
    assert set(only) == {"fold_0/orgseg_unit.json"}


def test_an_endpoint_restart_costs_retries_not_data(bucket, s3_server):
    n = 40
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(n):
                write_bytes(f"{bucket}/r/{i:03d}.bin", bytes([i % 256]) * 2000)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    s3_server.restart(down_s=1.5)
    t.join(timeout=120)
    assert not errors, errors
    files = list_files(f"{bucket}/r")
    assert len(files) == n
    assert all(read_bytes(f) == bytes([int(f[-7:-4]) % 256]) * 2000 for f in files)


def test_names_in_lists_one_level_and_an_unwritten_folder_is_empty(bucket, tmp_path):
    from orgseg.io.storage import names_in

    write_bytes(f"{bucket}/run/pseudo/c1/liver.json", b"{}")
    write_bytes(f"{bucket}/run/pseudo/c1/liver.nii.gz", b"x")
    write_bytes(f"{bucket}/run/pseudo/c1/sub/deeper.json", b"{}")
    assert names_in(f"{bucket}/run/pseudo/c1") == {"liver.json", "liver.nii.gz", "sub"}
    assert names_in(f"{bucket}/run/pseudo/c2") == set()  # not written yet: no error
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.json").write_text("{}")
    assert names_in(str(tmp_path / "d")) == {"a.json"}
    assert names_in(str(tmp_path / "missing")) == set()
