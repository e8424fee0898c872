"""Where a run keeps its files, under one run root (see docs/run-layout.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orgseg.config import RunConfig
from orgseg.io import join_url
from orgseg.nnunet.env import NnunetPaths


@dataclass(frozen=True, slots=True)
class RunLayout:
    root: str
    nnunet_dir: str

    @classmethod
    def of(cls, config: RunConfig) -> RunLayout:
        work = config.nnunet.work_dir or join_url(config.run_root, "nnunet")
        return cls(config.run_root, work)

    # --- run mechanics: unit markers, the submission record, shard counts ---------------
    @property
    def units_dir(self) -> str:
        return join_url(self.root, "units")

    @property
    def jobs_dir(self) -> str:
        return join_url(self.root, "jobs")

    def jobs_file(self, *parts: str) -> str:
        """``jobs/<parts>``: submission.json, shards.json, awsbatch/..."""
        return join_url(self.jobs_dir, *parts)

    @property
    def cases_dir(self) -> str:
        return join_url(self.root, "cases")

    def predictions_dir(self, strategy: int) -> str:
        return join_url(self.root, "predictions", f"strategy{strategy}")

    @property
    def evaluation_dir(self) -> str:
        return join_url(self.root, "evaluation")

    def evaluation_file(self, *parts: str) -> str:
        return join_url(self.evaluation_dir, *parts)

    @property
    def report(self) -> str:
        return join_url(self.root, "report.md")

    @property
    def demo_summary(self) -> str:
        return join_url(self.root, "summary.json")

    @property
    def nnunet(self) -> NnunetPaths:
        return NnunetPaths(Path(self.nnunet_dir))

    def manifest(self) -> str:
        return join_url(self.root, "manifest.json")

    def case_record(self, case_id: str) -> str:
        return join_url(self.cases_dir, f"{case_id}.json")

    def case_exclusion(self, case_id: str) -> str:
        return join_url(self.cases_dir, f"{case_id}.excluded.json")

    def cropped_ct(self, case_id: str) -> str:
        return join_url(self.cases_dir, f"{case_id}_ct.nii.gz")

    def manual_masks(self, case_id: str) -> str:
        return join_url(self.cases_dir, f"{case_id}_manual.npz")

    def cv_dice(self, strategy: int) -> str:
        return join_url(self.root, f"strategy{strategy}", "cv_dice.json")

    def pseudo_dir(self, case_id: str) -> str:
        return join_url(self.root, "pseudo", case_id)

    def pseudo_mask(self, case_id: str, organ: str) -> str:
        return join_url(self.pseudo_dir(case_id), f"{organ}.nii.gz")

    def pseudo_record(self, case_id: str, organ: str) -> str:
        return join_url(self.pseudo_dir(case_id), f"{organ}.json")

    def fused(self, case_id: str) -> str:
        return join_url(self.root, "fused", f"{case_id}.nii.gz")

    def fused_record(self, case_id: str) -> str:
        """Committed last: what the fused map trusted (its map alone is not committed)."""
        return join_url(self.root, "fused", f"{case_id}.json")

    @property
    def qc_dir(self) -> str:
        return join_url(self.root, "qc")

    def qc_file(self, name: str) -> str:
        return join_url(self.qc_dir, name)

    def model(self, strategy: int) -> str:
        return join_url(self.root, "models", f"strategy{strategy}")

    def organ_predictions_dir(self, case_id: str) -> str:
        """Strategy 1's organ masks of a test case (fused into its label map)."""
        return join_url(self.root, "predictions", "strategy1-organs", case_id)

    def organ_prediction(self, case_id: str, organ: str) -> str:
        return join_url(self.organ_predictions_dir(case_id), f"{organ}.nii.gz")

    def organ_prediction_record(self, case_id: str, organ: str) -> str:
        return join_url(self.organ_predictions_dir(case_id), f"{organ}.json")

    def prediction(self, strategy: int, case_id: str) -> str:
        return join_url(self.predictions_dir(strategy), f"{case_id}.nii.gz")
