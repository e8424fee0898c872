"""Running a training run's jobs (the job table, :mod:`orgseg.pipeline.jobs`) and
``orgseg bulk``: in this process, as Slurm job arrays through submitit, or as AWS Batch
array jobs. The only package that imports submitit and boto3's Batch client.

* :mod:`~orgseg.orchestrate.sbatch`: Slurm parameters and the sbatch text of each job (pure);
* :mod:`~orgseg.orchestrate.slurm`: submitting arrays, asking Slurm for task states;
* :mod:`~orgseg.orchestrate.plan`: what is left and what it costs (``--dry-run``);
* :mod:`~orgseg.orchestrate.runner`: ``train-all`` locally, on Slurm or AWS Batch, status,
  wait;
* :mod:`~orgseg.orchestrate.awsbatch`: AWS Batch array jobs and their children;
* :mod:`~orgseg.orchestrate.bulk_workload`: ``orgseg bulk`` planned and run (here, Slurm
  or Batch), its Slurm shard and finalize tasks;
* :mod:`~orgseg.orchestrate.demo`: ``make demo``.
"""
