"""Prediction of the held-out test cases with both strategies, and their evaluation."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import numpy as np

from orgseg.catalog import label_ids
from orgseg.config import RunConfig
from orgseg.core.crop import crop, uncrop
from orgseg.core.fusion import fuse_by_priority
from orgseg.core.metrics import overlap_metrics
from orgseg.core.orientation import to_canonical
from orgseg.inference.engine import EngineOptions, segment_volume
from orgseg.inference.model import ModelOptions, SegmentationModel
from orgseg.io import exists, join_url, load_ct, read_bytes, read_volume, save_like, write_bytes
from orgseg.io.storage import local_copy
from orgseg.pipeline.cases import CaseRecord, load_manifest, load_manual_masks
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.strategy1 import organ_predictor

log = logging.getLogger(__name__)


def predict_test_cases(config: RunConfig) -> None:
    """Stage ``predict``: label maps (catalog ids, input geometry) for every test case."""
    layout = RunLayout.of(config)
    manifest = load_manifest(config)
    tests = [manifest.case(c) for c in manifest.test]
    todo2 = [c for c in tests if not exists(layout.prediction(2, c.case_id))]
    if todo2:
        with local_copy(layout.model(2)) as model_dir:  # staged once when remote
            model = SegmentationModel(
                model_dir,
                ModelOptions(
                    device=config.nnunet.device,
                    use_mirroring=config.nnunet.use_mirroring,
                    tile_step_size=config.nnunet.tile_step_size,
                ),
            )
        engine = EngineOptions(
            mode=config.inference.mode,  # type: ignore[arg-type]
            chunk_mm=config.inference.chunk_mm,
            overlap_mm=config.inference.overlap_mm,
            body_crop=config.body_crop.enabled,
            body_margin_mm=config.body_crop.margin_mm,
        )
        for case in todo2:
            ct, rec = load_ct(case.image_url)
            seg = segment_volume(model, ct, engine)
            save_like(seg.labels, rec, layout.prediction(2, case.case_id))
            log.info("predict strategy 2: %s", case.case_id)
    todo1 = [c for c in tests if not exists(layout.prediction(1, c.case_id))]
    if not todo1:
        return
    cv_dice = json.loads(read_bytes(layout.cv_dice(1)))
    ids = label_ids(config.strategy1_organs)
    masks: dict[str, dict[str, np.ndarray]] = {c.case_id: {} for c in todo1}
    crops = {c.case_id: read_volume(layout.cropped_ct(c.case_id)) for c in todo1}
    for organ in config.strategy1_organs:  # each organ's ensemble is loaded once
        predictor = organ_predictor(config, organ)
        for case_id, ct in crops.items():
            masks[case_id][organ] = predictor.predict(np.asarray(ct.array), ct.spacing_mm) == 1
    for case in todo1:
        fused = fuse_by_priority(masks[case.case_id], ids, manual=(), cv_dice=cv_dice)
        full, rec = load_ct(case.image_url)
        save_like(uncrop(fused, case.crop_box), rec, layout.prediction(1, case.case_id))
        log.info("predict strategy 1: %s", case.case_id)


def _references(config: RunConfig, case: CaseRecord) -> Mapping[str, np.ndarray]:
    """Reference masks on the case's cropped canonical grid."""
    layout = RunLayout.of(config)
    if config.evaluation.ground_truth_dir:
        url = join_url(config.evaluation.ground_truth_dir, f"{case.case_id}.nii.gz")
        truth, _ = to_canonical(read_volume(url))
        arr = np.asarray(crop(np.asarray(truth.array), case.crop_box))
        ids = label_ids(config.strategy1_organs)
        return {o: arr == ids[o] for o in config.strategy1_organs}
    return dict(load_manual_masks(layout, case.case_id))


def evaluate_test_cases(config: RunConfig) -> dict[str, dict[str, dict[str, float | None]]]:
    """Stage ``evaluate``: per strategy, per organ: mean metrics over the test cases."""
    layout = RunLayout.of(config)
    manifest = load_manifest(config)
    # references are read once per case and shared by both strategies
    references = {c: _references(config, manifest.case(c)) for c in manifest.test}
    results: dict[str, dict[str, dict[str, float | None]]] = {}
    per_case: dict[str, dict[str, dict[str, dict[str, float | None]]]] = {}
    for strategy, organs in ((1, config.strategy1_organs), (2, config.strategy2_organs)):
        ids = label_ids(organs)
        rows: dict[str, list[dict[str, float | None]]] = {o: [] for o in organs}
        per_case[f"strategy{strategy}"] = {}
        for case_id in manifest.test:
            case = manifest.case(case_id)
            pred, _ = to_canonical(read_volume(layout.prediction(strategy, case_id)))
            pred_crop = np.asarray(crop(np.asarray(pred.array), case.crop_box))
            refs = references[case_id]
            per_case[f"strategy{strategy}"][case_id] = {}
            for organ in organs:
                if organ not in refs:
                    continue  # this case's source does not label it: no reference
                m = overlap_metrics(
                    pred_crop == ids[organ], refs[organ], spacing_mm=case.spacing_mm
                )
                rows[organ].append(m.to_dict())
                per_case[f"strategy{strategy}"][case_id][organ] = m.to_dict()
        results[f"strategy{strategy}"] = {
            organ: {"dice": float(np.mean([r["dice"] for r in rs])), "n": len(rs)}
            for organ, rs in rows.items()
            if rs
        }
    write_bytes(
        join_url(layout.root, "evaluation", "per_case.json"),
        json.dumps(per_case, indent=2).encode(),
    )
    write_bytes(
        join_url(layout.root, "evaluation", "summary.json"), json.dumps(results, indent=2).encode()
    )
    return results


def format_dice_table(
    results: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    cv: Mapping[str, float] | None = None,
) -> str:
    """A Markdown table: organ | strategy-1 Dice | strategy-2 Dice (| CV Dice)."""
    organs = sorted(set(results.get("strategy1", {})) | set(results.get("strategy2", {})))
    head = "| organ | strategy 1 Dice | strategy 2 Dice | n |" + (" s1 CV Dice |" if cv else "")
    lines = [head, "|---|---|---|---|" + ("---|" if cv else "")]

    def cell(strategy: str, organ: str) -> str:
        r = results.get(strategy, {}).get(organ)
        return f"{r['dice']:.3f}" if r else "-"

    for organ in organs:
        n = (results.get("strategy2", {}).get(organ) or results["strategy1"].get(organ) or {}).get(
            "n", 0
        )
        row = f"| {organ} | {cell('strategy1', organ)} | {cell('strategy2', organ)} | {n} |"
        if cv:
            row += f" {cv.get(organ, float('nan')):.3f} |"
        lines.append(row)
    return "\n".join(lines)
