# The workers' role and instance profile, least privilege: read and write objects under
# the bucket's orgseg prefixes, use the bucket's KMS key, pull the image. Nothing else (no
# bucket administration, no other buckets, no IAM). With batch = true the role is also the
# AWS Batch job role (ECS tasks assume it) and the instance profile carries the ECS agent's
# managed policy, so Batch's instances can join their cluster; and it may read Batch job
# states (a bulk run's finalize job waits for its shards).

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
  description = "Role and instance profile name (from the naming module)."
  type        = string
}

variable "bucket_arn" {
  description = "ARN of the data bucket."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the data bucket's KMS key."
  type        = string
}

variable "read_prefixes" {
  description = "Prefixes the workers read (datasets, archives, models)."
  type        = list(string)
  default     = ["data/", "archives/", "models/", "runs/"]
}

variable "write_prefixes" {
  description = "Prefixes the workers write (run roots, outputs, scratch)."
  type        = list(string)
  default     = ["runs/", "outputs/", "scratch/"]
}

variable "ecr_repository_arn" {
  description = "ECR repository of the orgseg image; null when the image comes from elsewhere."
  type        = string
  default     = null
}

variable "batch" {
  description = "Also an AWS Batch job role and ECS container instance profile."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = var.batch ? ["ec2.amazonaws.com", "ecs-tasks.amazonaws.com"] : ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "data" {
  statement {
    sid       = "ListOwnPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [for p in distinct(concat(var.read_prefixes, var.write_prefixes)) : "${p}*"]
    }
  }
  statement {
    sid       = "ReadObjects"
    actions   = ["s3:GetObject"]
    resources = [for p in distinct(concat(var.read_prefixes, var.write_prefixes)) : "${var.bucket_arn}/${p}*"]
  }
  statement {
    sid       = "WriteObjects"
    actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [for p in var.write_prefixes : "${var.bucket_arn}/${p}*"]
  }
  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "worker" {
  name                 = var.name
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  max_session_duration = 3600
  tags                 = var.tags
}

# a managed policy (not inline): the machine that submits runs attaches it too, since the
# driver uploads the run config and unit lists and reads the markers
resource "aws_iam_policy" "data" {
  name        = "${var.name}-data"
  description = "orgseg: the bucket's orgseg prefixes and its KMS key"
  policy      = data.aws_iam_policy_document.data.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "data" {
  role       = aws_iam_role.worker.name
  policy_arn = aws_iam_policy.data.arn
}

# a bulk run's finalize job waits on Batch for its shards to end, however they ended
# (dependsOn would fail it with a failed shard); DescribeJobs takes no resource ARNs
data "aws_iam_policy_document" "job_states" {
  count = var.batch ? 1 : 0
  statement {
    sid       = "ReadBatchJobStates"
    actions   = ["batch:DescribeJobs"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "job_states" {
  count  = var.batch ? 1 : 0
  name   = "${var.name}-job-states"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.job_states[0].json
}

data "aws_iam_policy_document" "pull" {
  count = var.ecr_repository_arn == null ? 0 : 1
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [var.ecr_repository_arn]
  }
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # this action has no resource-level scope
  }
}

resource "aws_iam_role_policy" "pull" {
  count  = var.ecr_repository_arn == null ? 0 : 1
  name   = "${var.name}-pull"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.pull[0].json
}

resource "aws_iam_role_policy_attachment" "ecs_agent" {
  count      = var.batch ? 1 : 0
  role       = aws_iam_role.worker.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "worker" {
  name = var.name
  role = aws_iam_role.worker.name
  tags = var.tags
}

output "role_arn" {
  value = aws_iam_role.worker.arn
}

output "data_policy_arn" {
  description = "The bucket access policy, also for the role or user that submits runs."
  value       = aws_iam_policy.data.arn
}

output "instance_profile_name" {
  value = aws_iam_instance_profile.worker.name
}

output "instance_profile_arn" {
  value = aws_iam_instance_profile.worker.arn
}
