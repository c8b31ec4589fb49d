"""Side-by-side benchmark: the project's full ``kedro run`` against Spark's floor and a pandas +
lifetimes script.

For each size it generates the input once (``cltv.synthetic``, seed 7; "sample" is the bundled
file), then runs, one after the other on the same file: the Spark floor (``spark_floor.py``,
the least work any Spark design of this pipeline must do: one scan, the clean lines written
once, the summary; from
``../shared/bench`` or ``--floor``), the reference script (``reference_pandas.py``) and the
project (a copy of its conf, fresh data and MLflow store, the default pipeline). It prints the
wall time and the peak memory of each whole process tree (the JVM and Python workers included;
PSS, so shared pages count once), and the ratios project / floor and project / pandas. Not part
of ``make test``: ``make bench`` (``ROWS="sample 1000000 10000000"``, "sample" being the
bundled file; 50M is opt-in).

    python -m tests.benchmarks.bench --rows sample 1000000 10000000 [--only floor|reference|project]
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
FLOOR = PROJECT_ROOT.parent / "shared" / "bench" / "spark_floor.py"
RUNS = ("floor", "reference", "project")


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


SAMPLE = PROJECT_ROOT / "data" / "01_raw" / "online_retail_ii_sample.csv"


def input_file(rows: int | str, workdir: Path) -> Path:
    """The generated file of ``rows`` lines (made once), or the bundled sample for "sample"."""
    if rows == "sample":
        return SAMPLE
    csv = workdir / f"lines_{rows}.csv"
    if not csv.exists():
        command = ["-m", "cltv.synthetic", "--rows", str(rows), "--seed", "7", "--out", str(csv)]
        subprocess.run([sys.executable, *command], check=True)
    return csv


def project_copy(workdir: Path, rows: int | str) -> Path:
    """A fresh project folder: the repo's conf and pyproject, empty data layers and MLflow."""
    project = workdir / f"project_{rows}"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    return project


def run_size(rows: int | str, workdir: Path, only: str | None, floor: Path = FLOOR) -> dict:
    csv = input_file(rows, workdir)
    result: dict = {"rows": rows, "csv_mb": round(csv.stat().st_size / 2**20)}
    if only in (None, "floor") and floor.exists():
        out = workdir / f"floor_{rows}"
        result["floor"] = asdict(
            measure([sys.executable, str(floor), str(csv), str(out)], workdir,
                    workdir / f"floor_{rows}.log")
        )  # fmt: skip
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
    return with_ratios(result)


def with_ratios(result: dict) -> dict:
    """``result`` with the project's wall time and peak PSS over the floor's and the pandas
    script's, where both ran."""
    for baseline in ("floor", "reference"):
        if baseline in result and "project" in result:
            project, other = result["project"], result[baseline]
            result[f"wall_ratio_{baseline}"] = round(project["wall_s"] / other["wall_s"], 2)
            result[f"memory_ratio_{baseline}"] = round(
                project["peak_pss_mb"] / other["peak_pss_mb"], 2
            )
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| rows | CSV MB | floor wall s / PSS MB | pandas wall s / PSS MB "
        "| project wall s / PSS MB | project ÷ floor (wall, PSS) | project ÷ pandas (wall, PSS) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [
            f"{r[run]['wall_s']} / {r[run]['peak_pss_mb']}" if run in r else "—" for run in RUNS
        ]
        ratios = [
            f"{r[f'wall_ratio_{b}']}×, {r[f'memory_ratio_{b}']}×" if f"wall_ratio_{b}" in r else "—"
            for b in ("floor", "reference")
        ]
        size = f"{r['rows']:,}" if isinstance(r["rows"], int) else r["rows"]
        lines.append(f"| {size} | {r['csv_mb']} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=lambda value: value if value == "sample" else int(value),
        nargs="+",
        default=["sample", 1_000_000, 10_000_000],
        help='line counts to generate, or "sample" for the bundled sample',
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cltv-bench"))
    parser.add_argument("--only", choices=RUNS)
    parser.add_argument("--floor", type=Path, default=FLOOR, help="spark_floor.py to run")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in args.rows:
        if args.only in (None, "floor") and not args.floor.exists():
            print(f"no Spark floor at {args.floor}: pass --floor PATH to compare with it")
        results.append(run_size(rows, args.workdir, args.only, args.floor))
        print(json.dumps(results[-1]), flush=True)
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    failed = [r["rows"] for r in results for k in RUNS
              if r.get(k, {}).get("returncode", 0) != 0]  # fmt: skip
    if failed:
        sys.exit(f"a run failed (see the logs in {args.workdir}): rows {failed}")


if __name__ == "__main__":
    main()
