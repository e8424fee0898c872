"""The chunked engine's options: one dataclass for the run config (``inference:``), the
CLI's flags and the engine itself, so each default is written once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orgseg.defaults import BODY_MARGIN_MM, CHUNK_OVERLAP_MM, TILE_STEP
from orgseg.errors import ConfigError

#: a model folder's sliding-window step when neither the user nor a model set says
DEFAULT_TILE_STEP = TILE_STEP


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    #: "stream": nnU-Net's whole-scan sliding window a tile row at a time (exact; models
    #: that cannot be streamed fall back to "blend"); "blend": chunks of chunk_mm
    #: overlapping by overlap_mm, each through the model's whole path, blended
    mode: Literal["stream", "blend"] = "stream"
    #: chunk length along the cranio-caudal axis; None segments the scan in one piece
    chunk_mm: float | None = 150.0
    #: overlap between neighbouring chunks (the paper found 50 mm sufficient)
    overlap_mm: float = CHUNK_OVERLAP_MM
    #: crop every chunk to the body contour (plus margin); outside it: background
    body_crop: bool = True
    body_margin_mm: float = BODY_MARGIN_MM
    #: rows of class probabilities brought back to the scan's grid at a time
    slab_rows: int = 16
    #: hold the blended overlap in float16 (half the memory; only near-exact ties between
    #: two classes can come out differently than in float32)
    half_precision_blend: bool = True
    #: tiles of one tile row per forward pass when streaming (1: nnU-Net's own one at a
    #: time, bit for bit; more is faster, see docs/engine.md)
    tile_batch: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("stream", "blend"):
            raise ConfigError(f"expected mode 'stream' or 'blend', got {self.mode!r}")
        # stream mode uses chunks only for a model that falls back to blending; there
        # plan_chunks refuses an overlap as long as the chunk
        if self.mode == "blend" and self.chunk_mm is not None and self.chunk_mm <= self.overlap_mm:
            raise ConfigError(
                f"chunk length ({self.chunk_mm} mm) must exceed the overlap "
                f"({self.overlap_mm} mm); use a longer --chunk-mm or a shorter --overlap-mm"
            )
        if self.tile_batch < 1:
            raise ConfigError(f"expected tile_batch >= 1, got {self.tile_batch}")
        if self.overlap_mm < 0 or self.body_margin_mm < 0:
            raise ConfigError(
                f"expected a non-negative overlap and margin, got {self.overlap_mm} mm and "
                f"{self.body_margin_mm} mm"
            )


#: the defaults, for CLI flags and function signatures that show them
DEFAULTS = EngineOptions()

#: the training run's own predictions (pseudo-labels, strategy-1 and strategy-2 test
#: predictions; the run config's ``inference:``): two tiles per forward pass. On the CPU a
#: batch of one runs PyTorch's slow native kernel in the deeper layers, so batches of two
#: are faster (benchmarks/pseudo_labels.py, docs/benchmarks.md); near-tie voxels can
#: differ from stock nnU-Net, which training labels and both strategies' test
#: predictions, made alike, do not notice.
#: ``orgseg segment`` keeps DEFAULTS (nnU-Net's result bit for bit).
PIPELINE_DEFAULTS = EngineOptions(tile_batch=2)
