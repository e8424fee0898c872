"""The one place that sets nnU-Net's environment variables."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NnunetPaths:
    """Local POSIX folders nnU-Net works in (nnU-Net cannot use object storage)."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def make(self) -> NnunetPaths:
        for p in (self.raw, self.preprocessed, self.results):
            p.mkdir(parents=True, exist_ok=True)
        return self


@contextlib.contextmanager
def nnunet_env(
    paths: NnunetPaths, *, training: bool = False, processes: int = 1
) -> Iterator[NnunetPaths]:
    """Point nnU-Net at ``paths`` for the duration of the block, then restore.

    ``training=True`` also sets ``nnUNet_n_proc_DA=0`` (augmentation in-process: seeded
    runs are reproducible, and no slower on small CPUs). It must not be set while
    planning, where it breaks nnU-Net's thread setup.
    """
    paths.make()
    values = {
        "nnUNet_raw": str(paths.raw),
        "nnUNet_preprocessed": str(paths.preprocessed),
        "nnUNet_results": str(paths.results),
        "nnUNet_def_n_proc": str(processes),
    }
    if training:
        values["nnUNet_n_proc_DA"] = os.environ.get("ORGSEG_N_PROC_DA", "0")
    values.setdefault("nnUNet_compile", os.environ.get("nnUNet_compile", "f"))
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield paths
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _LogWriter(io.TextIOBase):
    """A file-like object that forwards nnU-Net's prints to a logger, line by line."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger, self.level, self.buffer_ = logger, level, ""

    def write(self, s: str) -> int:
        self.buffer_ += s
        while "\n" in self.buffer_:
            line, self.buffer_ = self.buffer_.split("\n", 1)
            if line.strip():
                self.logger.log(self.level, "%s", line.rstrip())
        return len(s)


@contextlib.contextmanager
def nnunet_output_to_log(level: int = logging.DEBUG) -> Iterator[None]:
    """nnU-Net prints to stdout; inside this block its prints go to our log instead."""
    writer = _LogWriter(logging.getLogger("orgseg.nnunet.output"), level)
    with contextlib.redirect_stdout(writer):
        yield
