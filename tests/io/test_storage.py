from __future__ import annotations

import os

import fsspec
import pytest

from orgseg.errors import StorageError
from orgseg.io import atomic_local_path, exists, local_copy, read_bytes, read_volume, write_bytes


def test_bytes_round_trip_local_and_memory(tmp_path):
    for url in (str(tmp_path / "a" / "b.json"), "memory://orgseg-storage/b.json"):
        write_bytes(url, b"{}")
        assert exists(url) and read_bytes(url) == b"{}"
    with pytest.raises(StorageError, match="does not exist"):
        read_bytes("memory://orgseg-storage/none.json")


def test_remote_write_is_all_or_nothing():
    url = "memory://orgseg-storage/never.bin"
    with pytest.raises(ValueError), atomic_local_path(url) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"partial")
        raise ValueError("crash")
    assert not exists(url)


def test_dicom_folder_from_an_object_store(real_dicom_dir):
    fs = fsspec.filesystem("memory")
    for name in os.listdir(real_dicom_dir):
        fs.pipe(f"/orgseg-dicom/series/{name}", (real_dicom_dir / name).read_bytes())
    vol = read_volume("memory://orgseg-dicom/series")
    assert vol.shape == (20, 512, 512)
    with local_copy("memory://orgseg-dicom/series") as path:
        assert len(os.listdir(path)) == 20
    assert not os.path.exists(path)  # staging is cleaned up
