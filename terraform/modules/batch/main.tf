# AWS Batch for orgseg (executor awsbatch): managed EC2 compute environments on GPU spot
# (price-capacity-optimized over several instance types, min 0 vCPUs so they scale to zero
# by themselves), an on-demand GPU fallback and a CPU environment, job queues (GPU: spot
# first, then on-demand), and one job definition per kind of job (GPU, CPU) with the
# reclaim-only retry strategy. Instances use the hardened launch template: IMDSv2 only,
# encrypted root and scratch disks. `orgseg train-all/bulk --executor awsbatch` submits
# the array jobs; every unit is idempotent, so a retried child resumes from the bucket.
# The submit policy is what the machine running those commands needs from Batch: submit
# to these queues with these job definitions (and tag the jobs), read job states.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
  }
}

variable "name" {
  description = "Prefix of every Batch resource (from the naming module)."
  type        = string
}

variable "container_image" {
  description = "The orgseg image, pinned by tag or digest (never :latest)."
  type        = string

  validation {
    condition     = can(regex("(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]*)$", var.container_image)) && !endswith(var.container_image, ":latest")
    error_message = "container_image must carry a version tag or a digest, and not :latest."
  }
}

variable "cpu_container_image" {
  description = "The CPU image for CPU jobs (null: container_image)."
  type        = string
  default     = null
}

variable "instance_profile_arn" {
  description = "Instance profile of the compute instances (worker_role module, batch = true)."
  type        = string
}

variable "job_role_arn" {
  description = "Role the containers run as (worker_role module): bucket access only."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, ideally in several availability zones (more spot pools)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "give at least one subnet."
  }
}

variable "security_group_ids" {
  description = "Security groups of the instances (egress to the bucket and the registry)."
  type        = list(string)
}

variable "gpu_compute" {
  description = "From the spot_policy module's batch_compute output (GPU types, fallback, ceiling, retry)."
  type = object({
    instance_types      = list(string)
    spot                = bool
    on_demand_fallback  = bool
    allocation_strategy = string
    min_vcpus           = number
    max_vcpus           = number
    retry = object({
      attempts         = number
      evaluate_on_exit = list(map(string))
    })
  })
}

variable "cpu_instance_types" {
  description = "Instance types of the CPU environment."
  type        = list(string)
  default     = ["c6i.2xlarge", "c7i.2xlarge", "m6i.2xlarge"]
}

variable "max_cpu_vcpus" {
  description = "Most vCPUs of CPU instances at once."
  type        = number
  default     = 64
}

variable "timeout_s" {
  description = "Default attempt timeout of the job definitions (orgseg sets one per job)."
  type        = number
  default     = 14400
}

variable "image_id" {
  description = "AMI of the instances; null: Batch's ECS GPU-optimised AMI."
  type        = string
  default     = null
}

variable "root_volume_gb" {
  description = "Root disk (image layers)."
  type        = number
  default     = 100
}

variable "scratch_volume_gb" {
  description = "Scratch disk (nnU-Net staging, chunk buffers), mounted into the containers at /scratch."
  type        = number
  default     = 200
}

variable "ebs_kms_key_arn" {
  description = "KMS key for the disks; null uses the account's default EBS key."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

resource "aws_launch_template" "worker" {
  name_prefix   = "${var.name}-"
  image_id      = var.image_id
  ebs_optimized = true
  user_data = base64encode(<<-EOT
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="==orgseg=="

    --==orgseg==
    Content-Type: text/x-shellscript; charset="us-ascii"

    #!/bin/bash
    # the scratch disk at /scratch (containers mount it as ORGSEG_SCRATCH)
    dev=/dev/nvme1n1; [[ -b $dev ]] || dev=/dev/xvdb
    if [[ -b $dev ]]; then blkid $dev || mkfs.ext4 -q $dev; mkdir -p /scratch; mount $dev /scratch; chmod 1777 /scratch; fi
    --==orgseg==--
  EOT
  )

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # containers never reach the instance role: ECS gives them the job role
    instance_metadata_tags      = "disabled"
  }

  dynamic "block_device_mappings" {
    for_each = { "/dev/xvda" = var.root_volume_gb, "/dev/xvdb" = var.scratch_volume_gb }
    content {
      device_name = block_device_mappings.key
      ebs {
        volume_size           = block_device_mappings.value
        volume_type           = "gp3"
        encrypted             = true
        kms_key_id            = var.ebs_kms_key_arn
        delete_on_termination = true
      }
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = var.tags
  }

  tag_specifications {
    resource_type = "volume"
    tags          = var.tags
  }

  tags = var.tags
}

resource "aws_batch_compute_environment" "gpu_spot" {
  count                           = var.gpu_compute.spot ? 1 : 0
  compute_environment_name_prefix = "${var.name}-gpu-spot-"
  type                            = "MANAGED"

  compute_resources {
    type                = "SPOT"
    allocation_strategy = var.gpu_compute.allocation_strategy
    min_vcpus           = var.gpu_compute.min_vcpus # 0: scales to zero when the queue is empty
    max_vcpus           = var.gpu_compute.max_vcpus
    instance_type       = var.gpu_compute.instance_types
    instance_role       = var.instance_profile_arn
    subnets             = var.subnet_ids
    security_group_ids  = var.security_group_ids
    tags                = var.tags

    launch_template {
      launch_template_id = aws_launch_template.worker.id
      version            = aws_launch_template.worker.latest_version
    }
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_compute_environment" "gpu_on_demand" {
  count                           = var.gpu_compute.on_demand_fallback ? 1 : 0
  compute_environment_name_prefix = "${var.name}-gpu-od-"
  type                            = "MANAGED"

  compute_resources {
    type                = "EC2"
    allocation_strategy = "BEST_FIT_PROGRESSIVE"
    min_vcpus           = var.gpu_compute.min_vcpus
    max_vcpus           = var.gpu_compute.max_vcpus
    instance_type       = var.gpu_compute.instance_types
    instance_role       = var.instance_profile_arn
    subnets             = var.subnet_ids
    security_group_ids  = var.security_group_ids
    tags                = var.tags

    launch_template {
      launch_template_id = aws_launch_template.worker.id
      version            = aws_launch_template.worker.latest_version
    }
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_compute_environment" "cpu" {
  compute_environment_name_prefix = "${var.name}-cpu-"
  type                            = "MANAGED"

  compute_resources {
    type                = "SPOT"
    allocation_strategy = var.gpu_compute.allocation_strategy
    min_vcpus           = 0
    max_vcpus           = var.max_cpu_vcpus
    instance_type       = var.cpu_instance_types
    instance_role       = var.instance_profile_arn
    subnets             = var.subnet_ids
    security_group_ids  = var.security_group_ids
    tags                = var.tags

    launch_template {
      launch_template_id = aws_launch_template.worker.id
      version            = aws_launch_template.worker.latest_version
    }
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_job_queue" "gpu" {
  name     = "${var.name}-gpu-spot"
  state    = "ENABLED"
  priority = 1

  # spot first, on-demand when spot has no capacity
  dynamic "compute_environment_order" {
    for_each = concat(aws_batch_compute_environment.gpu_spot[*].arn, aws_batch_compute_environment.gpu_on_demand[*].arn)
    content {
      order               = compute_environment_order.key + 1
      compute_environment = compute_environment_order.value
    }
  }

  tags = var.tags
}

resource "aws_batch_job_queue" "cpu" {
  name     = "${var.name}-cpu"
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.cpu.arn
  }

  tags = var.tags
}

resource "aws_batch_job_definition" "job" {
  for_each = {
    gpu = { image = var.container_image, gpus = 1 }
    cpu = { image = coalesce(var.cpu_container_image, var.container_image), gpus = 0 }
  }
  name                  = "${var.name}-${each.key}"
  type                  = "container"
  platform_capabilities = ["EC2"]
  propagate_tags        = true

  container_properties = jsonencode({
    image      = each.value.image
    jobRoleArn = var.job_role_arn
    command    = ["orgseg", "--help"] # each submission sets the unit's command
    resourceRequirements = concat(
      [{ type = "VCPU", value = "4" }, { type = "MEMORY", value = "16384" }],
      each.value.gpus > 0 ? [{ type = "GPU", value = tostring(each.value.gpus) }] : [],
    )
    environment            = [{ name = "ORGSEG_SCRATCH", value = "/scratch" }]
    mountPoints            = [{ sourceVolume = "scratch", containerPath = "/scratch", readOnly = false }]
    volumes                = [{ name = "scratch", host = { sourcePath = "/scratch" } }]
    readonlyRootFilesystem = false
    privileged             = false
    user                   = "10001"
  })

  retry_strategy {
    attempts = var.gpu_compute.retry.attempts
    dynamic "evaluate_on_exit" {
      for_each = var.gpu_compute.retry.evaluate_on_exit
      content {
        on_status_reason = lookup(evaluate_on_exit.value, "on_status_reason", null)
        on_reason        = lookup(evaluate_on_exit.value, "on_reason", null)
        action           = evaluate_on_exit.value.action
      }
    }
  }

  timeout {
    attempt_duration_seconds = var.timeout_s
  }

  tags = var.tags
}

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "submit" {
  statement {
    sid     = "SubmitToOrgsegQueues"
    actions = ["batch:SubmitJob"]
    resources = concat(
      [aws_batch_job_queue.gpu.arn, aws_batch_job_queue.cpu.arn],
      [for d in aws_batch_job_definition.job : "${d.arn_prefix}:*"],
    )
  }
  statement {
    sid       = "TagSubmittedJobs" # SubmitJob with tags needs it
    actions   = ["batch:TagResource"]
    resources = ["arn:${data.aws_partition.current.partition}:batch:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:job/*"]
  }
  statement {
    sid       = "ReadJobStates"
    actions   = ["batch:DescribeJobs", "batch:ListJobs"]
    resources = ["*"] # these actions have no resource-level scope
  }
}

resource "aws_iam_policy" "submit" {
  name_prefix = "${var.name}-submit-"
  description = "orgseg --executor awsbatch: submit to the orgseg queues, read job states"
  policy      = data.aws_iam_policy_document.submit.json
  tags        = var.tags
}

output "submit_policy_arn" {
  description = "Attach to the role or user that runs orgseg train-all/bulk --executor awsbatch (with the worker_role module's data_policy_arn)."
  value       = aws_iam_policy.submit.arn
}

output "gpu_job_queue" {
  value = aws_batch_job_queue.gpu.name
}

output "cpu_job_queue" {
  value = aws_batch_job_queue.cpu.name
}

output "gpu_job_definition" {
  value = aws_batch_job_definition.job["gpu"].name
}

output "cpu_job_definition" {
  value = aws_batch_job_definition.job["cpu"].name
}
