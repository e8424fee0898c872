"""Prediction of the held-out test cases with both strategies, and their evaluation."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping

import numpy as np

from orgseg.catalog import label_ids
from orgseg.config import RunConfig
from orgseg.core.crop import crop, uncrop
from orgseg.core.fusion import fuse_by_priority
from orgseg.core.orientation import to_canonical
from orgseg.core.volume import Volume
from orgseg.evaluation.chunking import CHUNKING_COLUMNS, chunking_rows, chunking_table
from orgseg.evaluation.cv import cv_rows, cv_table, read_fold_cases
from orgseg.evaluation.inputs import CaseInfo, CaseLabels
from orgseg.evaluation.report import write_report
from orgseg.evaluation.scoring import Scores, score_case
from orgseg.evaluation.tables import Table, to_csv
from orgseg.inference.engine import segment_volume
from orgseg.inference.model import ModelOptions, SegmentationModel
from orgseg.inference.options import DEFAULTS
from orgseg.io import exists, join_url, load_ct, read_bytes, read_volume, save_like, write_bytes
from orgseg.io.storage import local_copy
from orgseg.nnunet.train import model_folder
from orgseg.pipeline.cases import CaseRecord, Manifest, load_manifest, load_manual_masks
from orgseg.pipeline.datasets import strategy1_dataset, strategy2_dataset
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.strategy1 import configuration_name, organ_predictor

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
        engine = dataclasses.replace(
            config.inference,
            body_crop=config.body_crop.enabled,
            body_margin_mm=config.body_crop.margin_mm,
        )
        for case in todo2:
            ct, rec = load_ct(case.image_url, series_uid=case.series_uid)
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
        full, rec = load_ct(case.image_url, series_uid=case.series_uid)
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


def _grid(shape: tuple[int, ...], spacing_mm: tuple[float, float, float]) -> Volume:
    """A grid description without memory: the masks compared are already on one grid."""
    return Volume(np.broadcast_to(np.zeros((), bool), shape), spacing_mm=spacing_mm)


def score_test_cases(config: RunConfig, manifest: Manifest) -> Scores:
    """Both strategies' held-out predictions against the references, per case and organ."""
    layout = RunLayout.of(config)
    scores = Scores(missing={"strategy1": [], "strategy2": []})
    for case_id in manifest.test:
        case = manifest.case(case_id)
        refs = _references(config, case)  # read once, shared by both strategies
        if not refs:
            continue
        shape = next(iter(refs.values())).shape
        ref = CaseLabels(dict(refs), _grid(shape, case.spacing_mm))
        info = CaseInfo(source=case.source, size_group=case.size_group)
        for strategy, organs in ((1, config.strategy1_organs), (2, config.strategy2_organs)):
            pred_vol, _ = to_canonical(read_volume(layout.prediction(strategy, case_id)))
            pred_crop = np.asarray(crop(np.asarray(pred_vol.array), case.crop_box))
            ids = label_ids(organs)
            pred = CaseLabels(
                {o: pred_crop == ids[o] for o in organs}, _grid(pred_crop.shape, case.spacing_mm)
            )
            scores.rows += score_case(f"strategy{strategy}", case_id, info, pred, ref)
    return scores


def evaluate_test_cases(config: RunConfig) -> dict[str, dict[str, dict[str, float | None]]]:
    """Stage ``evaluate``: the report under ``<run>/evaluation/`` (tables per source and
    size group, tests, plots, CV and chunking tables); returns per strategy, per organ:
    mean Dice and n over the test cases (also ``evaluation/summary.json``)."""
    layout = RunLayout.of(config)
    manifest = load_manifest(config)
    scores = score_test_cases(config, manifest)
    extra = [cv_table(cv_report_rows(config))]
    chunking = run_chunking_check(config, manifest)
    if chunking is not None:
        extra.append(chunking)
    out = join_url(layout.root, "evaluation")
    files = write_report(
        out,
        scores,
        group_by=config.evaluation.group_by,
        title="orgseg run report: held-out test cases",
        pairs=[("strategy1", "strategy2")],
        extra_tables=extra,
    )
    results: dict[str, dict[str, dict[str, float | None]]] = {"strategy1": {}, "strategy2": {}}
    for s in files.summary:
        if s["group"] == "all":
            results[str(s["model"])][str(s["organ"])] = {
                "dice": s["dice_mean"],  # type: ignore[dict-item]
                "n": s["n"],  # type: ignore[dict-item]
            }
    write_bytes(join_url(out, "summary.json"), json.dumps(results, indent=2).encode())
    return results


def cv_report_rows(config: RunConfig) -> list[dict[str, object]]:
    """Cross-validation rows of both strategies from nnU-Net's fold validation files."""
    layout = RunLayout.of(config)
    conf = configuration_name(config)
    folders = {
        "strategy1": [
            model_folder(layout.nnunet, strategy1_dataset(config, o)[1], conf)
            for o in config.strategy1_organs
        ],
        "strategy2": [model_folder(layout.nnunet, strategy2_dataset(config)[1], conf)],
    }
    return cv_rows(
        {
            name: [c for folder in paths for c in read_fold_cases(str(folder))]
            for name, paths in folders.items()
        }
    )


def run_chunking_check(config: RunConfig, manifest: Manifest) -> Table | None:
    """Chunked vs unchunked strategy-2 label maps on the first test cases."""
    ev = config.evaluation
    case_ids = list(manifest.test)[: ev.chunking_cases]
    if not case_ids:
        return None
    chunk_mm = ev.chunking_chunk_mm or config.inference.chunk_mm or DEFAULTS.chunk_mm
    with local_copy(RunLayout.of(config).model(2)) as model_dir:
        model = SegmentationModel(model_dir, ModelOptions(device=config.nnunet.device))
    records = {c: manifest.case(c) for c in case_ids}
    cases = {c: load_ct(r.image_url, series_uid=r.series_uid)[0] for c, r in records.items()}
    rows = chunking_rows(
        model,
        cases,
        model.labels,
        chunk_mm=chunk_mm,
        overlaps_mm=ev.chunking_overlaps_mm,
    )
    write_bytes(
        join_url(config.run_root, "evaluation", "chunking.csv"),
        to_csv(rows, CHUNKING_COLUMNS).encode(),
    )
    return chunking_table(rows, chunk_mm=chunk_mm)


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


def write_run_report(config: RunConfig) -> None:
    """The run's report: the full evaluation under ``<run>/evaluation/`` (report.html),
    and ``<run>/report.md``: held-out Dice per organ with strategy-1 CV Dice."""
    results = evaluate_test_cases(config)
    layout = RunLayout.of(config)
    cv = json.loads(read_bytes(layout.cv_dice(1)))
    text = "# orgseg run report\n\nHeld-out test cases, Dice per organ (mean over cases).\n\n"
    text += format_dice_table(results, cv) + "\n\n"
    text += "Full report (per source and size group, tests, plots, cross-validation and "
    text += "chunking tables): evaluation/report.html\n"
    write_bytes(join_url(layout.root, "report.md"), text.encode())
