# Example root module: the data bucket, the worker role and a GPU spot group running
# `orgseg bulk` on an archive. Copy it, fill in site.tfvars, then:
#   terraform init
#   terraform apply -var-file=site.tfvars

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

variable "image_id" {
  description = "GPU AMI with Docker and the NVIDIA container toolkit."
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

variable "orgseg_args" {
  description = "The command the workers run."
  type        = list(string)
}

variable "desired_capacity" {
  type    = number
  default = 0
}

module "naming" {
  source      = "../../modules/naming"
  environment = var.environment
  region      = var.region
}

module "capacity" {
  source           = "../../modules/spot_policy"
  capacity         = "spot-with-fallback"
  instance_types   = ["g6.xlarge", "g5.xlarge", "g6e.xlarge", "g4dn.xlarge"]
  min_size         = 0
  max_size         = 8
  desired_capacity = var.desired_capacity
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
  tags               = module.naming.tags
}

module "gpu_spot" {
  source                = "../../modules/gpu_spot"
  name                  = module.naming.worker_group_name
  image_id              = var.image_id
  container_image       = var.container_image
  orgseg_args           = var.orgseg_args
  instance_profile_name = module.worker_role.instance_profile_name
  subnet_ids            = var.subnet_ids
  security_group_ids    = var.security_group_ids
  mixed_instances       = module.capacity.mixed_instances
  group_size            = module.capacity.group_size
  tags                  = module.naming.tags
}

output "bucket" {
  value = module.bucket.bucket_name
}

output "worker_group" {
  value = module.gpu_spot.autoscaling_group_name
}
