"""Names of the training-run stages, in order (a light module: the CLI imports it)."""

STAGE_NAMES: tuple[str, ...] = (
    "cases",
    "strategy1-data",
    "strategy1-train",
    "pseudo-labels",
    "fusion",
    "strategy2-data",
    "strategy2-train",
    "predict",
    "evaluate",
)
