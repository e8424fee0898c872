"""Staging nnU-Net's folders for one unit when the run root is an object store.

nnU-Net reads and writes POSIX paths, so a unit whose run lives in ``s3://`` gets what it
needs copied to node-local scratch, and its outputs synced back at the end, data first and
markers last (also when the job is preempted: :func:`checkpoint_staged`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from orgseg.io import join_url
from orgseg.io.storage import is_local, sync_down, sync_up

if TYPE_CHECKING:
    from orgseg.config import RunConfig

log = logging.getLogger(__name__)


def nnunet_root(config: RunConfig) -> str:
    """Where the run's nnU-Net folders are committed (the run root's ``nnunet/``, unless
    ``nnunet.work_dir`` puts them elsewhere)."""
    from orgseg.pipeline.layout import RunLayout

    return RunLayout.of(config).nnunet_dir


#: what a unit needs of nnU-Net's folders: (part, dataset, markers only)
Need = tuple[str, str, bool]


@contextlib.contextmanager
def staged(config: RunConfig, needs: list[Need]) -> Iterator[RunConfig]:
    """The config a unit runs with: unchanged when nnU-Net's folders are local; otherwise
    pointing at node-local scratch (``$ORGSEG_SCRATCH`` or the temp dir) holding what the
    unit needs, synced back at the end, data first and markers last (also by
    :func:`checkpoint_staged` when the job is preempted)."""
    from orgseg.io.storage import MARKER_NAMES

    root = nnunet_root(config)
    if is_local(root):
        yield config
        return
    base = os.environ.get("ORGSEG_SCRATCH") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orgseg-nnunet-", dir=base) as scratch:
        fetched: dict[str, tuple[int, int]] = {}
        for part, name, markers_only in needs:
            got = sync_down(
                join_url(root, part, name),
                os.path.join(scratch, part, name),
                only=MARKER_NAMES if markers_only else None,
            )
            fetched.update({f"{part}/{name}/{rel}": v for rel, v in got.items()})
        local = dataclasses.replace(
            config, nnunet=dataclasses.replace(config.nnunet, work_dir=scratch)
        )
        entry = (scratch, root, fetched)
        _ACTIVE.append(entry)
        try:
            yield local
        finally:
            _ACTIVE.remove(entry)
            # a failed unit still syncs its checkpoints: the next attempt resumes from them
            sync_up(scratch, root, unchanged=fetched)


_ACTIVE: list[tuple[str, str, dict[str, tuple[int, int]]]] = []


def checkpoint_staged() -> None:
    """Sync every staged nnU-Net folder back now (called when a job is preempted)."""
    for scratch, root, fetched in list(_ACTIVE):
        log.info("preempted: syncing %s back to %s", scratch, root)
        sync_up(scratch, root, unchanged=fetched)
