"""Defaults that several layers share, each written once here (no imports: the CLI reads
them before anything heavy is loaded, and the pure core may use them)."""

from __future__ import annotations

#: margin around the body contour that a body crop keeps (cases stage, engine, body-mask)
BODY_MARGIN_MM = 10.0
#: sliding-window step as a fraction of the patch (nnU-Net's default) when neither the
#: user nor a model set says otherwise
TILE_STEP = 0.5
#: overlap between neighbouring chunks in blend mode (the reference study found 50 mm
#: sufficient)
CHUNK_OVERLAP_MM = 50.0
