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

#: the jobs of a run on a cluster (see orgseg.pipeline.units), in dependency order
JOB_NAMES: tuple[str, ...] = (
    "cases",
    "strategy1-data",
    "strategy1-train",
    "pseudo-labels",
    "fusion",
    "strategy2-train",
    "evaluate",
)
