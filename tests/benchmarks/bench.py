"""Side-by-side benchmark: the project's full ``kedro run`` against a pandas + lifetimes script.

For each size it generates the input once (``cltv.synthetic``, seed 7), then runs the reference
script (``reference_pandas.py``) and the project (a copy of its conf, fresh data and MLflow
store, the default pipeline) on the same file, one after the other, and prints wall time and
the peak memory of the whole process tree (the JVM and Python workers included; PSS, so
shared pages count once) of each, and
their ratios. Not part of ``make test``: ``make bench`` (or ``ROWS="1000000 10000000"``).

    python -m tests.benchmarks.bench --rows 1000000 10000000 [--only project|reference]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("reference_pandas.py")


@dataclass
class Measurement:
    wall_s: float
    peak_pss_mb: float
    returncode: int


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # the command may hold spaces and parentheses: the fields after the last ")"
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _pss_bytes(pid: int) -> int:
    # PSS, not RSS: forked workers (pyspark.daemon's) share pages with their parent, and RSS
    # would count those once per process
    for line in (Path("/proc") / str(pid) / "smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_memory_bytes(root: int) -> int:
    """Proportional set size of ``root`` and all its descendants, from /proc."""
    tree, total, stack = _children(), 0, [root]
    while stack:
        pid = stack.pop()
        try:
            total += _pss_bytes(pid)
        except OSError:
            continue
        stack.extend(tree.get(pid, []))
    return total


def measure(command: list[str], cwd: Path, log: Path, env: dict | None = None) -> Measurement:
    """Run ``command``, sampling the process tree's memory 10 times a second."""
    peak = 0
    with log.open("w") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_memory_bytes(process.pid))
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = process.wait()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    return Measurement(round(wall, 1), round(peak / 2**20), returncode)


def input_file(rows: int, workdir: Path) -> Path:
    csv = workdir / f"lines_{rows}.csv"
    if not csv.exists():
        command = ["-m", "cltv.synthetic", "--rows", str(rows), "--seed", "7", "--out", str(csv)]
        subprocess.run([sys.executable, *command], check=True)
    return csv


def project_copy(workdir: Path, rows: int) -> Path:
    """A fresh project folder: the repo's conf and pyproject, empty data layers and MLflow."""
    project = workdir / f"project_{rows}"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    return project


def run_size(rows: int, workdir: Path, only: str | None) -> dict:
    csv = input_file(rows, workdir)
    result: dict = {"rows": rows, "csv_mb": round(csv.stat().st_size / 2**20)}
    if only in (None, "reference"):
        out = workdir / f"reference_{rows}"
        result["reference"] = asdict(
            measure([sys.executable, str(REFERENCE), str(csv), str(out)], workdir,
                    workdir / f"reference_{rows}.log")
        )  # fmt: skip
    if only in (None, "project"):
        project = project_copy(workdir, rows)
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
        result["project"] = asdict(
            measure([sys.executable, "-m", "cltv", "--params", f"input_path={csv}"], project,
                    workdir / f"project_{rows}.log", env)
        )  # fmt: skip
    if "reference" in result and "project" in result:
        result["wall_ratio"] = round(result["project"]["wall_s"] / result["reference"]["wall_s"], 2)
        result["memory_ratio"] = round(
            result["project"]["peak_pss_mb"] / result["reference"]["peak_pss_mb"], 2
        )
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| rows | CSV MB | reference wall s | reference peak PSS MB | project wall s "
        "| project peak PSS MB | wall ratio | memory ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ref, proj = r.get("reference", {}), r.get("project", {})
        lines.append(
            f"| {r['rows']:,} | {r['csv_mb']} | {ref.get('wall_s', '')} | "
            f"{ref.get('peak_pss_mb', '')} | {proj.get('wall_s', '')} | "
            f"{proj.get('peak_pss_mb', '')} | {r.get('wall_ratio', '')} | "
            f"{r.get('memory_ratio', '')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cltv-bench"))
    parser.add_argument("--only", choices=["project", "reference"])
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in args.rows:
        results.append(run_size(rows, args.workdir, args.only))
        print(json.dumps(results[-1]), flush=True)
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    failed = [r["rows"] for r in results for k in ("reference", "project")
              if r.get(k, {}).get("returncode", 0) != 0]  # fmt: skip
    if failed:
        sys.exit(f"a run failed (see the logs in {args.workdir}): rows {failed}")


if __name__ == "__main__":
    main()
