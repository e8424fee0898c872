"""The one I/O layer: the only code that imports fsspec, SimpleITK or nibabel."""

from orgseg.io.scan_rows import ct_rows
from orgseg.io.storage import (
    atomic_local_path,
    exists,
    join_url,
    local_copy,
    read_bytes,
    write_bytes,
)
from orgseg.io.volumes import load_ct, read_volume, save_like, write_volume

__all__ = [
    "atomic_local_path",
    "ct_rows",
    "exists",
    "join_url",
    "load_ct",
    "local_copy",
    "read_bytes",
    "read_volume",
    "save_like",
    "write_bytes",
    "write_volume",
]
