"""Running the peer tools (TotalSegmentator, in its own venv: ``make peer-tools``) offline
on weights folders built here, and measuring a command's wall time and peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: where ``make peer-tools`` installs TotalSegmentator 2.18.0 (overridable for a user's own)
TOTALSEGMENTATOR = Path(
    os.environ.get(
        "ORGSEG_PEER_TOTALSEGMENTATOR",
        REPO / ".venv-peers" / "totalsegmentator" / "bin" / "TotalSegmentator",
    )
)


@dataclass(frozen=True, slots=True)
class Measured:
    seconds: float
    #: the largest proportional set size (PSS: shared pages split between the processes
    #: sharing them) summed over the process and its children, sampled at 20 Hz
    peak_rss_mb: float
    output: str


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_pss_kb(pid: int) -> int:
    """Memory of ``pid`` and its descendants (PSS, so a forked worker's pages shared with
    its parent count once), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        p = int(entry)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _pss_kb(p)
        todo += children.get(p, [])
    return total


def measure(cmd: list[str], env: dict[str, str] | None = None, timeout_s: float = 3600) -> Measured:
    """Run ``cmd`` as a fresh process; its wall time and the peak memory of its process
    tree (not ``ru_maxrss``, which a child inherits from a large parent at the fork)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_pss_kb(proc.pid))
        if time.perf_counter() - t0 > timeout_s:
            proc.kill()
            raise TimeoutError(f"{cmd[0]} ran past {timeout_s} s")
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    return Measured(seconds, peak / 1024.0, out)


def totalsegmentator_env(weights: Path, home: Path) -> dict[str, str]:
    """TotalSegmentator's environment offline: its weights folder is ``weights`` (the five
    ``Dataset29N_...`` folders), its home a config that sends no usage statistics."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(
        json.dumps({"totalseg_id": "totalseg_orgsegtest", "send_usage_stats": False,
                    "prediction_counter": 0})
    )  # fmt: skip
    return {
        **os.environ,
        "TOTALSEG_WEIGHTS_PATH": str(weights),
        "TOTALSEG_HOME_DIR": str(home),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }


def run_totalsegmentator(ct: Path, out: Path, weights: Path, home: Path) -> Measured:
    """``TotalSegmentator -i ct -o out --ml -d cpu`` (the ``total`` task, its defaults)."""
    if not TOTALSEGMENTATOR.exists():
        raise FileNotFoundError(
            f"TotalSegmentator is not installed at {TOTALSEGMENTATOR}; run `make peer-tools`"
        )
    cmd = [str(TOTALSEGMENTATOR), "-i", str(ct), "-o", str(out), "--ml", "-d", "cpu"]
    return measure(cmd, env=totalsegmentator_env(weights, home))
