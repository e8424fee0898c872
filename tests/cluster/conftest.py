"""Real services for the cluster tests: an S3 endpoint (moto's server) and the Slurm
cluster that ``.ci/run`` / ``make slurm-up`` starts (slurm/cluster.sh)."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import urllib.request

import pytest

from orgseg.config import StorageConfig
from orgseg.io.storage import configure_storage

BUCKET = "orgseg-test"
#: a credential that must never appear in config files, job pickles or logs
SECRET = "orgseg-secret-" + secrets.token_hex(8)


class S3:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def restart(self, down_s: float = 2.0) -> None:
        """Stop and start the endpoint on the same port; moto keeps the objects."""
        import time

        from moto.server import ThreadedMotoServer

        self.server.stop()
        time.sleep(down_s)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


@pytest.fixture(scope="session")
def s3_server():
    os.environ["AWS_ACCESS_KEY_ID"] = "orgseg-test-key"
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    server = S3()
    yield server
    server.server.stop()


@pytest.fixture
def bucket(s3_server):
    """A fresh, empty bucket on the real S3 endpoint; s3fs pointed at it."""
    import boto3

    s3_server.reset()
    boto3.client("s3", endpoint_url=s3_server.endpoint).create_bucket(Bucket=BUCKET)
    configure_storage(StorageConfig(endpoint_url=s3_server.endpoint))
    yield f"s3://{BUCKET}"


@pytest.fixture(scope="session")
def slurm_cluster():
    """The running single-node cluster; fails (never skips) when it is not up."""
    if shutil.which("sinfo") is None:
        pytest.fail("no Slurm client: run `make slurm-up` (slurm/cluster.sh) first")
    import time

    t0 = time.perf_counter()
    while True:  # a node still completing a job (comp) is up: wait for it
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=30
        )
        if out.returncode == 0 and any(s in out.stdout for s in ("idle", "mix", "alloc")):
            return True
        if time.perf_counter() - t0 > 90:
            pytest.fail(
                f"Slurm cluster not up ({out.stdout.strip()} {out.stderr.strip()}): "
                "run `make slurm-up`"
            )
        time.sleep(1.0)
