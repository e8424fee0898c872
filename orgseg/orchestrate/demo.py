"""`make demo`: the whole method on synthetic phantoms, on CPU, in minutes.

Generates a multi-source phantom set (each source labels only some organs, a few
paediatric cases, held-out test cases), runs every stage of ``train-all`` with the demo
config's reduced budgets, segments the held-out cases with strategy 1 and strategy 2 and
reports a per-organ Dice table against the phantom ground truth.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from orgseg.config import RunConfig
from orgseg.io import exists, join_url, read_bytes, write_bytes
from orgseg.orchestrate.runner import train_all
from orgseg.pipeline.evaluate import format_dice_table
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.phantom_set import PhantomSetConfig, write_phantom_set
from orgseg.pipeline.pseudo_qc import summary_text

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    strategy1: dict[str, float]
    strategy2: dict[str, float]
    cv_dice: dict[str, float]
    wall_s: float
    report: str
    #: lines of the pseudo-label QC summary (qc/summary.csv)
    qc: tuple[str, ...] = ()


def run_demo(config: RunConfig, phantoms: PhantomSetConfig) -> DemoResult:
    """Phantoms (unless already there) + the whole pipeline; writes summary.json."""
    t0 = time.perf_counter()
    if not exists(join_url(config.data_root, "sources.yaml")):
        log.info(
            "demo: writing %d x %d phantom cases to %s",
            phantoms.n_sources,
            phantoms.n_cases,
            config.data_root,
        )
        write_phantom_set(config.data_root, phantoms)
    train_all(config)
    layout = RunLayout.of(config)
    results = json.loads(read_bytes(layout.evaluation_file("summary.json")))
    cv = json.loads(read_bytes(layout.cv_dice(1)))
    wall = round(time.perf_counter() - t0, 1)
    summary = {
        "strategy1": {o: r["dice"] for o, r in results["strategy1"].items()},
        "strategy2": {o: r["dice"] for o, r in results["strategy2"].items()},
        "wall_s": wall,
    }
    write_bytes(layout.demo_summary, json.dumps(summary, indent=2).encode())
    return DemoResult(
        strategy1=summary["strategy1"],
        strategy2=summary["strategy2"],
        cv_dice=cv,
        wall_s=wall,
        report=format_dice_table(results, cv),
        qc=tuple(summary_text(config)),
    )
