from __future__ import annotations

from orgseg.cli import build_parser
from orgseg.pipeline.run import STAGES
from orgseg.pipeline.stages import STAGE_NAMES


def test_the_cli_lists_the_stages_in_run_order():
    assert tuple(STAGES) == STAGE_NAMES
    args = build_parser().parse_args(["run", "fusion", "-c", "x.yaml"])
    assert args.stage == "fusion"
