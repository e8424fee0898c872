"""The run configuration: one YAML file, loaded at the edge into frozen dataclasses.

Every stage takes the root :class:`RunConfig` (or one of its parts). Unknown keys are an
error that lists the valid ones; variants are made with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import yaml

from orgseg.catalog import STRATEGY1_ORGANS, STRATEGY2_ORGANS, check_organs
from orgseg.configtools import load_dataclass
from orgseg.core.qc import QCThresholds
from orgseg.defaults import BODY_MARGIN_MM, CHUNK_OVERLAP_MM, TILE_STEP
from orgseg.errors import ConfigError
from orgseg.inference.options import PIPELINE_DEFAULTS, EngineOptions
from orgseg.nnunet.budget import TrainingConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitConfig:
    #: per-source held-out test fraction (an official test list, e.g. TotalSegmentator's, wins)
    test_fraction: float = 0.1
    #: cross-validation folds of the training cases
    n_folds: int = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class NnunetConfig:
    #: the planned nnU-Net configuration trained
    configuration: str = "3d_fullres"
    #: strategy-1 datasets are base + the organ's catalog index, strategy 2 is base + 100
    dataset_id_base: int = 500
    #: scales the features per stage of the planned network (1.0 = nnU-Net's own plan);
    #: a smaller network is written as a derived plans configuration, not a code path
    features_scale: float = 1.0
    #: nnU-Net's preprocessing and export workers
    num_processes: int = 1
    #: where nnU-Net trains and the run's own predictions run
    device: Literal["cpu", "cuda"] = "cpu"
    #: test-time mirroring for the run's own predictions (8x the work in 3D)
    use_mirroring: bool = False
    #: sliding-window step of the run's own predictions, as a fraction of the patch
    tile_step_size: float = TILE_STEP
    #: local POSIX folder for nnUNet_raw/preprocessed/results; default: <run_root>/nnunet
    work_dir: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    """Object storage for ``s3://`` run roots. Credentials are deliberately absent: they
    come from the standard AWS sources only (environment, profile, instance role)."""

    #: an S3-compatible endpoint (MinIO, Ceph, ...); None: AWS itself
    endpoint_url: str | None = None
    #: the bucket's region (None: the AWS configuration's)
    region: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StageResources:
    """What one job's array tasks ask of Slurm (submitit parameters)."""

    #: Slurm partition (None: the cluster's default)
    partition: str | None = None
    #: GPUs per task (CPU jobs of the table never get one)
    gpus_per_node: int = 0
    #: CPU cores per task (AWS Batch: vCPUs)
    cpus_per_task: int = 2
    #: memory per task, GB
    mem_gb: float = 8.0
    #: time limit per task attempt; a timed-out unit requeues and resumes
    timeout_min: int = 60
    #: Slurm account to charge
    account: str | None = None
    #: Slurm QOS (e.g. a preemptible one for spot partitions)
    qos: str | None = None
    #: array tasks of this job running at once
    array_parallelism: int = 64
    #: command prefix that runs the job's python inside its image, e.g.
    #: "apptainer exec --nv /images/orgseg.sif" (None: the submitting python)
    container: str | None = None
    #: seconds before the time limit at which Slurm signals the job to checkpoint
    signal_delay_s: int = 120
    #: what one task hour of this job costs (e.g. the node's spot price in USD), for the
    #: cost per CT in ``orgseg bulk``'s plan and summary; None: no price given
    price_per_task_hour: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CostRates:
    """Seconds per unit of work, for ``--dry-run`` before any unit of a job has been
    measured (committed units' own wall seconds take over as soon as there are some).
    The defaults are one A100-class GPU and 8 CPU cores per task; set your site's."""

    #: one 250-iteration nnU-Net training epoch (GPU)
    epoch_s: float = 120.0
    #: one organ's 5-fold ensemble on one case, the paper's ~20 s (GPU)
    pseudo_label_s_per_case_organ: float = 20.0
    #: one strategy-2 prediction of one case (GPU)
    prediction_s_per_case: float = 30.0
    #: reading, body-cropping and hashing one case (CPU)
    case_prep_s: float = 15.0
    #: nnU-Net preprocessing of one case for one dataset (CPU)
    preprocess_s_per_case: float = 5.0
    #: fusing one case's manual and pseudo masks (CPU)
    fusion_s_per_case: float = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchConfig:
    """AWS Batch (executor ``awsbatch``): the queues and job definitions Terraform made
    (``terraform/examples/aws`` outputs them); vCPUs, memory, GPUs and timeouts come from
    the stage resources."""

    #: queue of the CPU jobs (and of the GPU jobs without gpu_job_queue)
    job_queue: str = "orgseg-spot"
    #: the GPU jobs' queue and job definition (None: job_queue / job_definition)
    gpu_job_queue: str | None = None
    #: job definition of the CPU jobs (and of the GPU jobs without gpu_job_definition)
    job_definition: str = "orgseg"
    #: job definition of the GPU jobs (None: job_definition)
    gpu_job_definition: str | None = None
    #: attempts per unit: a reclaimed spot host is retried, any other failure is not
    attempts: int = 5
    #: Batch API endpoint (None: AWS's for the region)
    endpoint_url: str | None = None
    #: the Batch API's region (None: the AWS configuration's)
    region: str | None = None


#: where a run's or a bulk job's tasks run (cluster.executor, --executor)
Executor = Literal["local", "slurm", "awsbatch"]
EXECUTORS: tuple[str, ...] = get_args(Executor)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """How ``orgseg train-all`` runs: in this process, as Slurm jobs or on AWS Batch."""

    #: where the units run: in this process, as Slurm job arrays, or as AWS Batch array jobs
    executor: Executor = "local"
    #: submitit's folder (job pickles and logs): must be on a filesystem shared by the
    #: submitting host and the compute nodes
    jobs_dir: str = "orgseg-jobs"
    #: resources of every job unless overridden in ``stages``
    default: StageResources = field(default_factory=StageResources)
    #: per-job overrides, by job name (cases, strategy1-data, strategy1-train, ..., bulk):
    #: the fields given replace the default's, the others keep ``default``'s values
    stages: dict[str, StageResources] = field(
        default_factory=dict, metadata={"overrides_of": "default"}
    )
    #: requeues allowed after time-outs (preemptions requeue without limit)
    max_timeouts: int = 3
    #: documented seconds per unit of work, for ``--dry-run`` until units are measured
    rates: CostRates = field(default_factory=CostRates)
    #: AWS Batch queues and job definitions (executor awsbatch)
    batch: BatchConfig = field(default_factory=BatchConfig)

    def resources(self, job: str) -> StageResources:
        return self.stages.get(job, self.default)


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyCropConfig:
    #: crop every case to its body contour (cases stage and engine alike)
    enabled: bool = True
    #: margin kept around the body contour
    margin_mm: float = BODY_MARGIN_MM


@dataclass(frozen=True, slots=True, kw_only=True)
class PseudoLabelConfig:
    #: thresholds of the per-mask quality figures; a mask past one is not trusted
    qc: QCThresholds = field(default_factory=QCThresholds)
    #: a person's decisions that overrule QC: CSV (file or URL) ``case,organ,accept|reject``
    review: str | None = None
    #: the worst-scoring masks of each organ shown on its contact sheet (qc/sheets/)
    sheet_masks: int = 8


#: what fusion does with a pseudo-label QC did not trust (fusion.untrusted)
Untrusted = Literal["ignore", "drop-case", "keep"]
UNTRUSTED_POLICIES: tuple[str, ...] = get_args(Untrusted)


@dataclass(frozen=True, slots=True, kw_only=True)
class FusionConfig:
    #: ignore: the mask's voxels (grown by ignore_margin_mm) that no trusted label claims
    #: become nnU-Net's ignore label; drop-case: the case is left out of strategy 2;
    #: keep: fused as if trusted. keep is the default: benchmarks/pseudo_qc.py found it
    #: best in both replicates' mean Dice (docs/benchmarks.md)
    untrusted: Untrusted = "keep"
    #: how far an ignored untrusted mask is grown
    ignore_margin_mm: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationConfig:
    #: optional folder of full reference label maps (catalog label ids), e.g. phantom truth
    ground_truth_dir: str | None = None
    #: the report's summaries per test subset and/or adult vs paediatric
    group_by: tuple[str, ...] = ("source", "size")
    #: chunking reproducibility table: this many test cases (0: no table), these overlaps,
    #: chunks of chunking_chunk_mm (None: inference.chunk_mm)
    chunking_cases: int = 2
    chunking_overlaps_mm: tuple[float, ...] = (0.0, CHUNK_OVERLAP_MM)
    #: chunk length of the chunking table (None: inference.chunk_mm)
    chunking_chunk_mm: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """One training run: data, organs, splits, nnU-Net settings and budgets."""

    #: where the run writes (a folder or an s3:// prefix)
    run_root: str
    #: where the sources' folders are
    data_root: str
    #: an extra source registry YAML (<data_root>/sources.yaml is read too)
    registry: str | None = None
    #: the sources to read: a list of registry names (each in ``data_root/<name>``), or a
    #: mapping name -> folder the release unpacked into (relative to ``data_root``,
    #: absolute, or a URL); empty: every registered source with a folder under data_root
    sources: tuple[str, ...] | Mapping[str, str] = ()
    #: cases left out of every stage: ids, a mapping id -> reason, or a file/URL of ids
    #: (one per line, optional ``# reason``)
    exclude: tuple[str, ...] | Mapping[str, str] | str = ()
    #: seed of splits, folds and training
    seed: int = 0
    #: organs with a strategy-1 binary model (default: the catalog's 26)
    strategy1_organs: tuple[str, ...] = tuple(o.name for o in STRATEGY1_ORGANS)
    #: organs of the strategy-2 multi-label model (default: 19)
    strategy2_organs: tuple[str, ...] = STRATEGY2_ORGANS
    #: per-source test split and CV folds
    split: SplitConfig = field(default_factory=SplitConfig)
    #: the body-contour crop of cases and predictions
    body_crop: BodyCropConfig = field(default_factory=BodyCropConfig)
    #: nnU-Net planning, device and prediction settings
    nnunet: NnunetConfig = field(default_factory=NnunetConfig)
    #: budget of each strategy-1 (organ, fold) unit
    strategy1_training: TrainingConfig = field(default_factory=TrainingConfig)
    #: budget of each strategy-2 fold
    strategy2_training: TrainingConfig = field(default_factory=TrainingConfig)
    #: shard counts of the case-level jobs (cases, pseudo-labels, fusion,
    #: test-predictions); a job not named gets one shard per its default cases per shard,
    #: worked out once per run (orgseg/pipeline/shards.py)
    shards: dict[str, int] = field(default_factory=dict)
    #: the chunked engine for the run's own predictions (see orgseg segment; two tiles per
    #: forward pass, see PIPELINE_DEFAULTS); its body_crop and body_margin_mm are not set
    #: here but follow ``body_crop:`` above (one crop for the cases and the engine)
    inference: EngineOptions = PIPELINE_DEFAULTS
    #: pseudo-label QC and review
    pseudo_labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    #: how untrusted pseudo-labels are fused
    fusion: FusionConfig = field(default_factory=FusionConfig)
    #: the report's references, groups and chunking table
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    #: object storage for s3:// URLs
    storage: StorageConfig = field(default_factory=StorageConfig)
    #: where and with what resources the jobs run (a cluster profile's section)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        # the engine crops as the cases stage does: inference's crop fields are derived
        object.__setattr__(
            self,
            "inference",
            dataclasses.replace(
                self.inference,
                body_crop=self.body_crop.enabled,
                body_margin_mm=self.body_crop.margin_mm,
            ),
        )
        check_organs(self.strategy1_organs)
        check_organs(self.strategy2_organs)
        missing = sorted(set(self.strategy2_organs) - set(self.strategy1_organs))
        if missing:
            raise ConfigError(
                f"strategy2_organs {missing} are not in strategy1_organs: strategy 2 learns "
                "from strategy-1 pseudo-labels, so add them to strategy1_organs"
            )
        for name, t in (
            ("strategy1_training", self.strategy1_training),
            ("strategy2_training", self.strategy2_training),
        ):
            bad = [f for f in t.folds if not 0 <= f < self.split.n_folds]
            if bad or not t.folds or t.epochs < 1 or t.iterations_per_epoch < 1:
                raise ConfigError(
                    f"{name}: expected folds within 0..{self.split.n_folds - 1}, epochs >= 1 "
                    f"and iterations_per_epoch >= 1; got folds {list(t.folds)}, epochs "
                    f"{t.epochs}, iterations {t.iterations_per_epoch}"
                )
        if not 0.0 <= self.split.test_fraction < 1.0 or self.split.n_folds < 2:
            raise ConfigError(
                f"split: expected 0 <= test_fraction < 1 and n_folds >= 2, got "
                f"{self.split.test_fraction}, {self.split.n_folds}"
            )
        if self.fusion.untrusted not in UNTRUSTED_POLICIES or self.fusion.ignore_margin_mm < 0:
            raise ConfigError(
                f"fusion: expected untrusted one of {list(UNTRUSTED_POLICIES)} and "
                f"ignore_margin_mm >= 0, got {self.fusion.untrusted!r}, "
                f"{self.fusion.ignore_margin_mm}"
            )
        if self.pseudo_labels.sheet_masks < 0:
            raise ConfigError(
                f"pseudo_labels.sheet_masks must be >= 0, got {self.pseudo_labels.sheet_masks}"
            )
        if not 0 < self.nnunet.features_scale <= 1.0:
            raise ConfigError(
                f"nnunet.features_scale must be in (0, 1], got {self.nnunet.features_scale}"
            )
        if not 1 <= self.nnunet.dataset_id_base <= 999 - 100:
            raise ConfigError(
                f"nnunet.dataset_id_base must be 1..899 (ids base..base+100 are used), got "
                f"{self.nnunet.dataset_id_base}"
            )


def source_folders(config: RunConfig) -> dict[str, str]:
    """name -> folder URL of each source the config names (empty: none named).

    >>> c = RunConfig(run_root="r", data_root="s3://b/data",
    ...               sources={"lits": "LiTS", "verse": "/mnt/verse19"})
    >>> source_folders(c)
    {'lits': 's3://b/data/LiTS', 'verse': '/mnt/verse19'}
    """
    if isinstance(config.sources, Mapping):
        items = list(config.sources.items())
    else:
        items = [(name, name) for name in config.sources]
    out = {}
    for name, folder in items:
        absolute = "://" in folder or folder.startswith("/")
        out[name] = folder if absolute else f"{config.data_root.rstrip('/')}/{folder.strip('/')}"
    return out


def load_cluster_profile(url: str | None) -> ClusterConfig:
    """The ``cluster:`` section of a cluster profile (a YAML file or URL, e.g. one of
    ``jobs/profiles/``, or a whole run config); the defaults when ``url`` is None or the
    section is empty (``cluster:`` or ``cluster: null``)."""
    if not url:
        return ClusterConfig()
    from orgseg.io.storage import read_bytes

    try:
        data = yaml.safe_load(read_bytes(url).decode())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{url}: not valid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{url}: expected a mapping with a cluster: section, got {type(data).__name__}"
        )
    return load_dataclass(ClusterConfig, data.get("cluster"), where=f"{url}:cluster")


#: keys of ``inference:`` that a run config takes from ``body_crop:`` instead
DERIVED_INFERENCE_KEYS = {
    "body_crop": "body_crop.enabled",
    "body_margin_mm": "body_crop.margin_mm",
}


def run_config_data(config: RunConfig) -> dict:
    """The config as the plain mapping :func:`parse_run_config` takes back: every value
    (nothing left to defaults that could differ between versions), derived keys left out."""
    data = dataclasses.asdict(config)
    for key in DERIVED_INFERENCE_KEYS:
        del data["inference"][key]
    return data


def parse_run_config(data: object, *, where: str = "config") -> RunConfig:
    inference = data.get("inference") if isinstance(data, Mapping) else None
    given = sorted(set(inference or {}) & set(DERIVED_INFERENCE_KEYS))
    if given:
        use = ", ".join(DERIVED_INFERENCE_KEYS[k] for k in given)
        raise ConfigError(
            f"{where}: inference.{'/'.join(given)} is not set under inference: the run "
            f"crops cases and predictions alike from body_crop:; set {use} instead"
        )
    return load_dataclass(RunConfig, data, where=where)


def load_run_config(text: str, *, where: str = "config") -> RunConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    return parse_run_config(data, where=where)
