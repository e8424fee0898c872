# The GPU capacity rules of the orgseg workers, as plain values and preconditions.
# Provider-free: the provider-bound batch module takes its values from here, and
# `terraform test` checks the rules offline.

terraform {
  required_version = ">= 1.6"
}

variable "instance_types" {
  description = "GPU instance types, in order of preference. Spot needs several for capacity fallback."
  type        = list(string)
  default     = ["g6.xlarge", "g5.xlarge", "g6e.xlarge", "g4dn.xlarge"]
}

variable "gpu_families" {
  description = "Instance families allowed (GPU families only)."
  type        = list(string)
  default     = ["g4dn", "g5", "g6", "g6e", "p4d", "p5"]
}

variable "capacity" {
  description = "spot (interruptible only), on-demand, or spot-with-fallback (spot first, on-demand when spot has no capacity)."
  type        = string
  default     = "spot-with-fallback"

  validation {
    condition     = contains(["spot", "on-demand", "spot-with-fallback"], var.capacity)
    error_message = "capacity must be spot, on-demand or spot-with-fallback."
  }
}

variable "on_demand_base_capacity" {
  description = "Instances that are always on-demand (spot-with-fallback: at least 1)."
  type        = number
  default     = 0

  validation {
    condition     = var.on_demand_base_capacity >= 0 && floor(var.on_demand_base_capacity) == var.on_demand_base_capacity
    error_message = "on_demand_base_capacity must be a whole number >= 0."
  }
}

variable "min_size" {
  description = "Fewest instances (0 lets the group idle at no cost)."
  type        = number
  default     = 0
}

variable "max_size" {
  description = "Most instances."
  type        = number
  default     = 4
}

variable "desired_capacity" {
  description = "Instances to run now."
  type        = number
  default     = 0
}

variable "max_vcpus" {
  description = "AWS Batch: most GPU vCPUs at once (the compute environments start at 0)."
  type        = number
  default     = 64
}

variable "attempts" {
  description = "AWS Batch: attempts per job (reclaimed spot hosts are retried, nothing else)."
  type        = number
  default     = 5

  validation {
    condition     = var.attempts >= 1 && var.attempts <= 10 && floor(var.attempts) == var.attempts
    error_message = "attempts must be a whole number 1..10 (AWS Batch's range)."
  }
}

locals {
  families      = [for t in var.instance_types : split(".", t)[0]]
  bad_types     = [for t in var.instance_types : t if !contains(var.gpu_families, split(".", t)[0])]
  is_spot       = var.capacity != "on-demand"
  on_demand_pct = var.capacity == "on-demand" ? 100 : 0
  base          = var.capacity == "spot-with-fallback" ? max(1, var.on_demand_base_capacity) : (var.capacity == "on-demand" ? var.on_demand_base_capacity : 0)
}

output "mixed_instances" {
  description = "Values for an Auto Scaling group's mixed_instances_policy."
  value = {
    instance_types                           = var.instance_types
    on_demand_base_capacity                  = local.base
    on_demand_percentage_above_base_capacity = local.on_demand_pct
    spot_allocation_strategy                 = "price-capacity-optimized"
    capacity_rebalance                       = local.is_spot
  }

  precondition {
    condition     = length(var.instance_types) > 0
    error_message = "give at least one GPU instance type."
  }
  precondition {
    condition     = length(local.bad_types) == 0
    error_message = "not GPU instance types of the allowed families (${join(", ", var.gpu_families)}): ${join(", ", local.bad_types)}."
  }
  precondition {
    condition     = !local.is_spot || length(distinct(var.instance_types)) >= 2
    error_message = "spot capacity needs at least two distinct instance types, so that an interrupted or unavailable type falls back to another."
  }
  precondition {
    condition     = var.capacity != "spot" || var.on_demand_base_capacity == 0
    error_message = "capacity = spot takes no on-demand base capacity; use spot-with-fallback."
  }
}

output "group_size" {
  description = "min, max and desired instance counts."
  value = {
    min     = var.min_size
    max     = var.max_size
    desired = var.desired_capacity
  }

  precondition {
    condition     = var.min_size >= 0 && var.min_size <= var.desired_capacity && var.desired_capacity <= var.max_size
    error_message = "expected 0 <= min_size <= desired_capacity <= max_size, got ${var.min_size}, ${var.desired_capacity}, ${var.max_size}."
  }
  precondition {
    condition     = var.max_size >= local.base
    error_message = "max_size (${var.max_size}) is below the on-demand base capacity (${local.base})."
  }
}

output "batch_compute" {
  description = "AWS Batch: the GPU compute environments (spot first, on-demand fallback), both scaling from 0 vCPUs, and the reclaim-only retry strategy."
  value = {
    instance_types      = var.instance_types
    spot                = local.is_spot
    on_demand_fallback  = var.capacity != "spot"
    allocation_strategy = "SPOT_PRICE_CAPACITY_OPTIMIZED"
    min_vcpus           = 0
    max_vcpus           = var.max_vcpus
    retry = {
      attempts = var.attempts
      evaluate_on_exit = [
        { on_status_reason = "Host EC2*", action = "RETRY" },
        { on_reason = "*", action = "EXIT" },
      ]
    }
  }

  precondition {
    condition     = var.max_vcpus >= 4
    error_message = "max_vcpus (${var.max_vcpus}) is below one GPU instance (4 vCPUs)."
  }
  precondition {
    condition     = !local.is_spot || length(distinct(var.instance_types)) >= 2
    error_message = "spot capacity needs at least two distinct instance types, so that an interrupted or unavailable type falls back to another."
  }
  precondition {
    condition     = length(local.bad_types) == 0
    error_message = "not GPU instance types of the allowed families (${join(", ", var.gpu_families)}): ${join(", ", local.bad_types)}."
  }
}
