# Names and tags of every orgseg cloud resource, from a project and an environment.
# Provider-free: `terraform init -backend=false && terraform test` runs offline.

terraform {
  required_version = ">= 1.6"
}

variable "project" {
  description = "Short project name: lowercase letters, digits and hyphens, 3-20 characters."
  type        = string
  default     = "orgseg"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.project))
    error_message = "project must be 3-20 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (e.g. \"orgseg\")."
  }
}

variable "environment" {
  description = "Deployment stage: dev, staging or prod."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging, prod."
  }
}

variable "region" {
  description = "Cloud region the resources live in, e.g. eu-west-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like eu-west-1 or us-east-2."
  }
}

variable "extra_tags" {
  description = "Tags added to every resource (cost centre, owner, ...)."
  type        = map(string)
  default     = {}
}

locals {
  prefix      = "${var.project}-${var.environment}"
  bucket_name = "${local.prefix}-data-${var.region}"
}

output "prefix" {
  description = "Common name prefix."
  value       = local.prefix
}

output "bucket_name" {
  description = "The data bucket's globally unique name (3-63 characters, DNS-compatible)."
  value       = local.bucket_name

  precondition {
    condition     = length(local.bucket_name) <= 63
    error_message = "bucket name ${local.bucket_name} is longer than 63 characters; use a shorter project name."
  }
}

output "worker_role_name" {
  description = "IAM role of the GPU workers."
  value       = "${local.prefix}-worker"
}

output "worker_group_name" {
  description = "Auto Scaling group (and launch template) of the GPU spot workers."
  value       = "${local.prefix}-gpu-spot"
}

output "tags" {
  description = "Tags for every resource."
  value = merge(var.extra_tags, {
    project     = var.project
    environment = var.environment
    managed-by  = "terraform"
    application = "orgseg"
  })
}
