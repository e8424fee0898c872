# GPU spot capacity that runs the orgseg container: a launch template (IMDSv2 only,
# encrypted disks, the worker instance profile) and an Auto Scaling group over several GPU
# instance types (values and rules from the spot_policy module). Every orgseg unit is
# idempotent, so an interrupted instance's work is picked up by the next one from what the
# bucket holds; nnU-Net training resumes from its latest checkpoint.

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
  description = "Launch template and group name (from the naming module)."
  type        = string
}

variable "image_id" {
  description = "AMI with Docker and the NVIDIA container toolkit (e.g. a deep-learning base AMI)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.image_id))
    error_message = "image_id must be an AMI id such as ami-0123456789abcdef0."
  }
}

variable "container_image" {
  description = "The orgseg image, pinned by tag or digest (never :latest)."
  type        = string

  validation {
    condition     = can(regex("(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]*)$", var.container_image)) && !endswith(var.container_image, ":latest")
    error_message = "container_image must carry a version tag or a digest, and not :latest."
  }
}

variable "orgseg_args" {
  description = "The orgseg command the workers run, e.g. [\"bulk\", \"-i\", \"s3://b/archives/x\", ...]."
  type        = list(string)

  validation {
    condition     = length(var.orgseg_args) > 0
    error_message = "orgseg_args must name an orgseg command and its options."
  }
}

variable "instance_profile_name" {
  description = "Instance profile of the workers (worker_role module)."
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
  description = "Security groups of the workers (egress to the bucket and the registry)."
  type        = list(string)
}

variable "root_volume_gb" {
  description = "Root disk (image layers)."
  type        = number
  default     = 100
}

variable "scratch_volume_gb" {
  description = "Scratch disk mounted at /scratch (nnU-Net staging, chunk buffers)."
  type        = number
  default     = 200
}

variable "ebs_kms_key_arn" {
  description = "KMS key for the disks; null uses the account's default EBS key."
  type        = string
  default     = null
}

variable "mixed_instances" {
  description = "From the spot_policy module's mixed_instances output."
  type = object({
    instance_types                           = list(string)
    on_demand_base_capacity                  = number
    on_demand_percentage_above_base_capacity = number
    spot_allocation_strategy                 = string
    capacity_rebalance                       = bool
  })
}

variable "group_size" {
  description = "From the spot_policy module's group_size output."
  type = object({
    min     = number
    max     = number
    desired = number
  })
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
  user_data = base64encode(templatefile("${path.module}/user_data.sh.tftpl", {
    container_image = var.container_image
    orgseg_args     = join(" ", [for a in var.orgseg_args : format("'%s'", replace(a, "'", "'\\''"))])
  }))

  iam_instance_profile {
    name = var.instance_profile_name
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # the container uses the host network
    instance_metadata_tags      = "disabled"
  }

  # root (image layers) and scratch (/scratch) disks, both encrypted gp3
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

  network_interfaces {
    associate_public_ip_address = false
    security_groups             = var.security_group_ids
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

resource "aws_autoscaling_group" "worker" {
  name                = var.name
  vpc_zone_identifier = var.subnet_ids
  min_size            = var.group_size.min
  max_size            = var.group_size.max
  desired_capacity    = var.group_size.desired
  capacity_rebalance  = var.mixed_instances.capacity_rebalance
  health_check_type   = "EC2"

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = var.mixed_instances.on_demand_base_capacity
      on_demand_percentage_above_base_capacity = var.mixed_instances.on_demand_percentage_above_base_capacity
      spot_allocation_strategy                 = var.mixed_instances.spot_allocation_strategy
    }
    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.worker.id
        version            = aws_launch_template.worker.latest_version
      }
      dynamic "override" {
        for_each = var.mixed_instances.instance_types
        content {
          instance_type = override.value
        }
      }
    }
  }

  dynamic "tag" {
    for_each = var.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}

output "autoscaling_group_name" {
  value = aws_autoscaling_group.worker.name
}

output "launch_template_id" {
  value = aws_launch_template.worker.id
}
