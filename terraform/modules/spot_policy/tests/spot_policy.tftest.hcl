# terraform test (offline): spot / on-demand fallback rules

run "default_is_spot_with_one_on_demand_fallback" {
  command = plan

  assert {
    condition     = output.mixed_instances.on_demand_base_capacity == 1
    error_message = "spot-with-fallback must keep one on-demand instance as the floor"
  }
  assert {
    condition     = output.mixed_instances.on_demand_percentage_above_base_capacity == 0
    error_message = "above the base everything must be spot"
  }
  assert {
    condition     = output.mixed_instances.capacity_rebalance
    error_message = "spot groups rebalance ahead of interruptions"
  }
  assert {
    condition     = length(output.mixed_instances.instance_types) >= 2
    error_message = "several instance types expected"
  }
}

run "pure_spot_has_no_on_demand" {
  command = plan
  variables {
    capacity = "spot"
  }
  assert {
    condition     = output.mixed_instances.on_demand_base_capacity == 0 && output.mixed_instances.on_demand_percentage_above_base_capacity == 0
    error_message = "pure spot must not buy on-demand capacity"
  }
}

run "on_demand_is_all_on_demand" {
  command = plan
  variables {
    capacity       = "on-demand"
    instance_types = ["g5.xlarge"]
  }
  assert {
    condition     = output.mixed_instances.on_demand_percentage_above_base_capacity == 100 && !output.mixed_instances.capacity_rebalance
    error_message = "on-demand groups are 100% on-demand and do not rebalance"
  }
}

run "spot_with_a_single_type_is_rejected" {
  command = plan
  variables {
    instance_types = ["g5.xlarge"]
  }
  expect_failures = [output.mixed_instances, output.batch_compute]
}

run "non_gpu_types_are_rejected" {
  command = plan
  variables {
    instance_types = ["g5.xlarge", "m5.xlarge"]
  }
  expect_failures = [output.mixed_instances, output.batch_compute]
}

run "spot_with_on_demand_base_is_rejected" {
  command = plan
  variables {
    capacity                = "spot"
    on_demand_base_capacity = 2
  }
  expect_failures = [output.mixed_instances]
}

run "unknown_capacity_is_rejected" {
  command = plan
  variables {
    capacity = "reserved"
  }
  expect_failures = [var.capacity]
}

run "sizes_must_be_ordered" {
  command = plan
  variables {
    min_size         = 2
    desired_capacity = 1
  }
  expect_failures = [output.group_size]
}

run "batch_scales_from_zero_with_spot_first_and_an_on_demand_fallback" {
  command = plan
  assert {
    condition     = output.batch_compute.min_vcpus == 0 && output.batch_compute.spot && output.batch_compute.on_demand_fallback
    error_message = "Batch GPU capacity must start at 0 vCPUs, spot first, with the on-demand fallback"
  }
  assert {
    condition     = output.batch_compute.allocation_strategy == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    error_message = "spot must be price-capacity-optimized"
  }
  assert {
    condition     = output.batch_compute.retry.evaluate_on_exit[0].on_status_reason == "Host EC2*" && output.batch_compute.retry.evaluate_on_exit[0].action == "RETRY" && output.batch_compute.retry.evaluate_on_exit[1].action == "EXIT"
    error_message = "only a reclaimed host is retried; every other failure exits"
  }
}

run "batch_pure_spot_has_no_fallback" {
  command = plan
  variables {
    capacity = "spot"
  }
  assert {
    condition     = !output.batch_compute.on_demand_fallback
    error_message = "pure spot must not fall back to on-demand"
  }
}

run "batch_attempts_outside_batch_range_are_rejected" {
  command = plan
  variables {
    attempts = 11
  }
  expect_failures = [var.attempts]
}

run "batch_ceiling_below_one_instance_is_rejected" {
  command = plan
  variables {
    max_vcpus = 2
  }
  expect_failures = [output.batch_compute]
}
