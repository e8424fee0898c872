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


def test_configure_storage_clears_the_endpoint_it_set_but_keeps_the_users_own(monkeypatch):
    import fsspec

    from orgseg.config import StorageConfig
    from orgseg.io.storage import configure_storage

    monkeypatch.setitem(fsspec.config.conf, "s3", {})
    configure_storage(StorageConfig(endpoint_url="http://127.0.0.1:9", region="eu-west-1"))
    s3 = fsspec.config.conf["s3"]
    assert s3["endpoint_url"] == "http://127.0.0.1:9"
    assert s3["client_kwargs"]["region_name"] == "eu-west-1"
    configure_storage(StorageConfig())  # the next run of this process names none
    assert "endpoint_url" not in fsspec.config.conf["s3"]
    assert "client_kwargs" not in fsspec.config.conf["s3"]
    # an endpoint from the user's fsspec config, not set here, is left alone
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": "http://minio:9000"})
    configure_storage(StorageConfig())
    assert fsspec.config.conf["s3"]["endpoint_url"] == "http://minio:9000"
