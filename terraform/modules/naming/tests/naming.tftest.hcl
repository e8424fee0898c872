# terraform test (offline): names, tags and the validations' error paths

variables {
  project     = "orgseg"
  environment = "prod"
  region      = "eu-west-1"
}

run "names_follow_project_and_environment" {
  command = plan

  assert {
    condition     = output.bucket_name == "orgseg-prod-data-eu-west-1"
    error_message = "unexpected bucket name ${output.bucket_name}"
  }
  assert {
    condition     = output.worker_role_name == "orgseg-prod-worker"
    error_message = "unexpected role name"
  }
  assert {
    condition     = output.tags["environment"] == "prod" && output.tags["managed-by"] == "terraform"
    error_message = "tags lack environment or managed-by"
  }
}

run "extra_tags_are_kept_but_cannot_override_ours" {
  command = plan
  variables {
    extra_tags = { owner = "radiotherapy", environment = "spoofed" }
  }
  assert {
    condition     = output.tags["owner"] == "radiotherapy" && output.tags["environment"] == "prod"
    error_message = "extra tags must be kept and must not override the environment tag"
  }
}

run "uppercase_project_is_rejected" {
  command = plan
  variables {
    project = "OrgSeg"
  }
  expect_failures = [var.project]
}

run "unknown_environment_is_rejected" {
  command = plan
  variables {
    environment = "test"
  }
  expect_failures = [var.environment]
}

run "malformed_region_is_rejected" {
  command = plan
  variables {
    region = "europe"
  }
  expect_failures = [var.region]
}

run "too_long_bucket_name_fails_its_precondition" {
  command = plan
  variables {
    project = "radiotherapy-archive"
    region  = "ap-southeastandnortheastern-interior-1"
  }
  expect_failures = [output.bucket_name]
}
