# Example root module: the data bucket, the worker role and AWS Batch (GPU spot with an
# on-demand fallback, a CPU queue, job definitions) for `orgseg train-all/bulk --executor
# awsbatch`. Copy it, fill in site.tfvars, then:
#   terraform init
#   terraform apply -var-file=site.tfvars
# and put the outputs in the run config's cluster.batch (jobs/profiles/aws-batch-spot.yaml).

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type = string
}

variable "environment" {
  type = string
}

variable "access_log_bucket" {
  description = "Existing bucket for S3 server access logs."
  type        = string
}

variable "container_image" {
  description = "orgseg GPU image, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/orgseg:0.1.0"
  type        = string
}

variable "ecr_repository_arn" {
  type    = string
  default = null
}

variable "subnet_ids" {
  type = list(string)
}

variable "security_group_ids" {
  type = list(string)
}

variable "submitter_role_names" {
  description = "IAM roles that run `orgseg train-all/bulk --executor awsbatch` (a CI runner's, an operator's): they get the bucket policy and the Batch submit policy."
  type        = list(string)
  default     = []
}

variable "max_gpu_vcpus" {
  description = "Most GPU vCPUs at once (the spot fleet's ceiling)."
  type        = number
  default     = 32
}

module "naming" {
  source      = "../../modules/naming"
  environment = var.environment
  region      = var.region
}

module "capacity" {
  source         = "../../modules/spot_policy"
  capacity       = "spot-with-fallback"
  instance_types = ["g6.xlarge", "g5.xlarge", "g6e.xlarge", "g4dn.xlarge"]
  max_vcpus      = var.max_gpu_vcpus
  attempts       = 5
}

module "bucket" {
  source            = "../../modules/bucket"
  name              = module.naming.bucket_name
  access_log_bucket = var.access_log_bucket
  tags              = module.naming.tags
}

module "worker_role" {
  source             = "../../modules/worker_role"
  name               = module.naming.worker_role_name
  bucket_arn         = module.bucket.bucket_arn
  kms_key_arn        = module.bucket.kms_key_arn
  ecr_repository_arn = var.ecr_repository_arn
  batch              = true
  tags               = module.naming.tags
}

module "batch" {
  source               = "../../modules/batch"
  name                 = module.naming.worker_group_name
  container_image      = var.container_image
  instance_profile_arn = module.worker_role.instance_profile_arn
  job_role_arn         = module.worker_role.role_arn
  subnet_ids           = var.subnet_ids
  security_group_ids   = var.security_group_ids
  gpu_compute          = module.capacity.batch_compute
  tags                 = module.naming.tags
}

# what the driver needs: upload the run config and unit lists, read markers (data), submit
# the array jobs and read their states (submit)
resource "aws_iam_role_policy_attachment" "submitter" {
  for_each = {
    for pair in setproduct(var.submitter_role_names, ["data", "submit"]) : "${pair[0]}/${pair[1]}" => {
      role   = pair[0]
      policy = pair[1] == "data" ? module.worker_role.data_policy_arn : module.batch.submit_policy_arn
    }
  }
  role       = each.value.role
  policy_arn = each.value.policy
}

output "bucket" {
  value = module.bucket.bucket_name
}

output "submitter_policy_arns" {
  description = "Attach both to whoever submits runs (or list their roles in submitter_role_names)."
  value       = [module.worker_role.data_policy_arn, module.batch.submit_policy_arn]
}

output "batch" {
  description = "cluster.batch of the run config"
  value = {
    job_queue          = module.batch.cpu_job_queue
    job_definition     = module.batch.cpu_job_definition
    gpu_job_queue      = module.batch.gpu_job_queue
    gpu_job_definition = module.batch.gpu_job_definition
  }
}
