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
  expect_failures = [output.mixed_instances]
}

run "non_gpu_types_are_rejected" {
  command = plan
  variables {
    instance_types = ["g5.xlarge", "m5.xlarge"]
  }
  expect_failures = [output.mixed_instances]
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
