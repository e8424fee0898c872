"""Running a training run's jobs (the job table, :mod:`orgseg.pipeline.jobs`): in this
process, or as Slurm job arrays through submitit. The only package that imports submitit.

* :mod:`~orgseg.orchestrate.sbatch`: Slurm parameters and the sbatch text of each job (pure);
* :mod:`~orgseg.orchestrate.slurm`: submitting arrays, asking Slurm for task states;
* :mod:`~orgseg.orchestrate.plan`: what is left and what it costs (``--dry-run``);
* :mod:`~orgseg.orchestrate.runner`: ``train-all`` locally or on Slurm, status, wait;
* :mod:`~orgseg.orchestrate.bulk`: ``orgseg bulk``'s shard and finalize tasks;
* :mod:`~orgseg.orchestrate.demo`: ``make demo``.
"""
