"""Side-by-side benchmark: the project's full ``kedro run`` against Spark's floor and a pandas +
lifetimes script.

For each size it generates the input once (``cltv.synthetic``, seed 7; "sample" is the bundled
file), then runs, one after the other on the same file: the Spark floor (``spark_floor.py``,
the least work any Spark design of this pipeline must do: one scan, the clean lines written
once, the summary; from ``../shared/bench`` or ``--floor``), the project (a copy of its conf,
fresh data and MLflow store, the default pipeline), the reference script
(``reference_pandas.py``) and the project's ``--pipelines data_processing,cltv``, the same job
as the pandas script. It prints the wall time and the peak memory of each whole process tree
(the JVM and Python workers included; PSS, so shared pages count once), the ratios project /
floor, project / pandas and job / pandas, and where the default run's time went by stage (from
its ``Node … took`` lines: cleaning, summaries and features, churn, CLV, reporting, and the
start-up before the first node), in floors and with the Spark jobs of each stage.

The box drifts between runs minutes apart, so ``--pairs N`` runs those four N times in turn
(floor, project, pandas, job, floor, project, …): each ratio is taken within one round, and
the size's figure is the median over the rounds. It prints each round and the medians.
``--pairs 1`` (the default) is one shot. Not part of ``make test``: ``make bench``
(``ROWS="sample 1000000 10000000"``, "sample" being the bundled file; 50M is opt-in;
``PAIRS=3``).

    python -m tests.benchmarks.bench --rows sample 1000000 10000000 [--pairs 3] \
        [--only floor|reference|project|job]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("reference_pandas.py")
FLOOR = PROJECT_ROOT.parent / "shared" / "bench" / "spark_floor.py"
RUNS = ("floor", "reference", "project", "job")
# the project's run of the same job as the pandas script
JOB_PIPELINES = "data_processing,cltv"


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


def sampling_pause(sample_s: float) -> float:
    """Seconds to wait after a memory sample that took ``sample_s``: a tenth of a second, or 20
    times the sample's cost when that is longer. Reading a multi-GB JVM's ``smaps_rollup``
    costs ~30 ms of kernel time; ten a second took a third of a core from the run measured."""
    return max(0.1, 20 * sample_s)


def measure(command: list[str], cwd: Path, log: Path, env: dict | None = None) -> Measurement:
    """Run ``command``, sampling the process tree's memory up to 10 times a second, and never
    with more than ~5% of one core (:func:`sampling_pause`). Its start time (epoch seconds) is
    written beside the log, for :func:`stage_times`."""
    peak = 0
    with log.open("w") as output:
        log.with_suffix(".start").write_text(repr(time.time()))
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                began = time.perf_counter()
                peak = max(peak, tree_memory_bytes(process.pid))
                done.wait(sampling_pause(time.perf_counter() - began))

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
        # written under another name and renamed when complete: a run stopped while generating
        # must not leave a partial file that the next run would take as the input
        partial = workdir / f"lines_{rows}.partial.csv"
        command = ["-m", "cltv.synthetic", "--rows", str(rows), "--seed", "7"]
        command += ["--out", str(partial)]
        subprocess.run([sys.executable, *command], check=True)
        Path(f"{partial}.truth.json").replace(f"{csv}.truth.json")
        partial.replace(csv)
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


def run_size(
    rows: int | str, workdir: Path, only: str | None, floor: Path = FLOOR, pairs: int = 1
) -> dict:
    """``pairs`` rounds of the runs on one input, each in the order floor, project, reference,
    job: every ratio is taken within a round (the project against the floor just before it,
    the job against the pandas script just before it), so the box drifting between rounds moves
    both sides of a ratio. The size's figures are the medians over the rounds (:func:`medians`).
    """
    csv = input_file(rows, workdir)
    rounds = [
        run_pair(csv, workdir, f"{rows}" if pairs == 1 else f"{rows}_pair{number}", only, floor)
        for number in range(1, pairs + 1)
    ]
    return {"rows": rows, "csv_mb": round(csv.stat().st_size / 2**20), "pairs": rounds,
            "median": medians(rounds)}  # fmt: skip


def run_pair(csv: Path, workdir: Path, name: str, only: str | None, floor: Path = FLOOR) -> dict:
    """One round of the runs on ``csv``, logs and project copies named after ``name``."""
    result: dict = {}
    if only in (None, "floor") and floor.exists():
        out = workdir / f"floor_{name}"
        result["floor"] = asdict(
            measure([sys.executable, str(floor), str(csv), str(out)], workdir,
                    workdir / f"floor_{name}.log")
        )  # fmt: skip
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "1",
        # the Spark jobs each node ran are logged at DEBUG (cltv.hooks.NodeTimingHook)
        "KEDRO_LOGGING_CONFIG": str(debug_logging_config(workdir)),
    }
    if only in (None, "project"):
        project = project_copy(workdir, name)
        log = workdir / f"project_{name}.log"
        result["project"] = asdict(
            measure([sys.executable, "-m", "cltv", "--params", f"input_path={csv}"], project,
                    log, env)
        )  # fmt: skip
        result["stages"] = stage_times(log, result["project"]["wall_s"])
        result["stage_jobs"] = stage_jobs(log)
    if only in (None, "reference"):
        out = workdir / f"reference_{name}"
        result["reference"] = asdict(
            measure([sys.executable, str(REFERENCE), str(csv), str(out)], workdir,
                    workdir / f"reference_{name}.log")
        )  # fmt: skip
    if only in (None, "job"):
        project = project_copy(workdir, f"job_{name}")
        result["job"] = asdict(
            measure([sys.executable, "-m", "cltv", "--pipelines", JOB_PIPELINES,
                     "--params", f"input_path={csv}"], project, workdir / f"job_{name}.log", env)
        )  # fmt: skip
    return with_ratios(result)


NODE_TIME = re.compile(r"^(\S+ \S+) INFO cltv\.hooks: Node (\S+) took ([0-9.]+) s$")
NODE_JOBS = re.compile(r" DEBUG cltv\.hooks: Node (\S+) took [0-9.]+ s and ran (\d+) Spark jobs$")
STAGES = (
    "start-up",
    "cleaning",
    "summaries + features",
    "churn",
    "scoring + reasons",
    "CLV",
    "reporting",
)
# scoring every customer with the champion, where the churn reasons are computed (in the
# same pandas UDF) and their global view observed: a stage of its own, to see what they cost
SCORING_NODES = ("score_customers", "summarise_churn_reasons")


def stage_of_nodes() -> dict[str, str]:
    """Each node of the default pipeline and its stage: cleaning is everything up to the clean
    and quarantine tables; churn includes the purchase models' churn scores it reads, but not
    the scoring of every customer (:data:`SCORING_NODES`)."""
    from kedro.framework.project import configure_project, pipelines

    configure_project("cltv")
    data_processing = pipelines["data_processing"]
    cleaning = data_processing.to_outputs(
        "transactions_clean", "transactions_quarantine", "quarantine_report"
    )
    stages = {node.name: "summaries + features" for node in data_processing.nodes}
    stages.update({node.name: "cleaning" for node in cleaning.nodes})
    stages["log_quarantine_metrics"] = "cleaning"
    stages.update({node.name: "churn" for node in pipelines["churn_modeling"].nodes})
    for node in pipelines["cltv"].nodes:
        stages[node.name] = "churn" if node.name.startswith("btyd_churn_scores") else "CLV"
    stages.update(dict.fromkeys(SCORING_NODES, "scoring + reasons"))
    stages.update({node.name: "reporting" for node in pipelines["reporting"].nodes})
    return stages


def _log_time(stamp: str) -> float:
    # the run log's local time, as logging's default format writes it
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def stage_times(log: Path, wall_s: float, stages: dict[str, str] | None = None) -> dict:
    """Seconds per stage of a default run, from its log: the ``Node … took`` lines summed by
    stage; ``start-up`` from the process start to the first node's start (its ``took`` span
    begins when its first input starts loading); ``other`` the rest of the wall time (closing
    the MLflow run, stopping Spark)."""
    stages = stages if stages is not None else stage_of_nodes()
    totals = dict.fromkeys(STAGES, 0.0)
    first_node = None
    for line in log.read_text().splitlines():
        if found := NODE_TIME.match(line):
            if first_node is None:
                first_node = _log_time(found.group(1)) - float(found.group(3))
            totals[stages.get(found.group(2), "other")] = totals.get(
                stages.get(found.group(2), "other"), 0.0
            ) + float(found.group(3))
    start = log.with_suffix(".start")
    if first_node is not None and start.exists():
        totals["start-up"] = first_node - float(start.read_text())
    totals["other"] = wall_s - sum(totals.values())
    return {stage: round(seconds, 1) for stage, seconds in totals.items()}


def stage_jobs(log: Path, stages: dict[str, str] | None = None) -> dict:
    """Spark jobs per stage of a default run, from its log's ``DEBUG`` lines (``Node … took … s
    and ran … Spark jobs``); empty when the run logged none."""
    stages = stages if stages is not None else stage_of_nodes()
    totals: dict[str, int] = {}
    for line in log.read_text().splitlines():
        if found := NODE_JOBS.search(line):
            stage = stages.get(found.group(1), "other")
            totals[stage] = totals.get(stage, 0) + int(found.group(2))
    return totals


def debug_logging_config(workdir: Path) -> Path:
    """The project's logging configuration with ``cltv.hooks`` at DEBUG: the jobs per node."""
    import yaml

    config = yaml.safe_load((PROJECT_ROOT / "conf" / "logging.yml").read_text())
    for handler in config["handlers"].values():
        handler["level"] = "DEBUG"
    config["loggers"]["cltv.hooks"] = {"level": "DEBUG"}
    path = workdir / "logging_debug.yml"
    path.write_text(yaml.safe_dump(config))
    return path


# what each ratio divides: the project by the floor and by the pandas script, the job by the
# pandas script (the same job)
RATIOS = (("project", "floor"), ("project", "reference"), ("job", "reference"))


def _ratio_prefix(run: str) -> str:
    return "" if run == "project" else f"{run}_"


def with_ratios(result: dict) -> dict:
    """``result`` (one round) with the project's wall time and peak PSS over the floor's and the
    pandas script's, where both ran; and the data_processing + cltv job's over the pandas
    script's."""
    for run, baseline in RATIOS:
        if baseline in result and run in result:
            ours, other = result[run], result[baseline]
            prefix = _ratio_prefix(run)
            result[f"{prefix}wall_ratio_{baseline}"] = round(ours["wall_s"] / other["wall_s"], 2)
            result[f"{prefix}memory_ratio_{baseline}"] = round(
                ours["peak_pss_mb"] / other["peak_pss_mb"], 2
            )
    return result


def medians(rounds: list[dict]) -> dict:
    """The median over the rounds of each run's wall time and peak PSS and of each ratio (the
    median of the rounds' ratios, not the ratio of the medians), where every round has it."""
    result: dict = {}
    for run in RUNS:
        if rounds and all(run in r for r in rounds):
            result[run] = {
                measure: round(statistics.median(r[run][measure] for r in rounds), 1)
                for measure in ("wall_s", "peak_pss_mb")
            }
    for run, baseline in RATIOS:
        for measure in ("wall", "memory"):
            key = f"{_ratio_prefix(run)}{measure}_ratio_{baseline}"
            if rounds and all(key in r for r in rounds):
                result[key] = round(statistics.median(r[key] for r in rounds), 2)
    return result


def table(results: list[dict]) -> str:
    """The runs side by side, then each size's default run by stage."""
    lines = [
        "| rows | CSV MB | floor wall s / PSS MB | pandas wall s / PSS MB "
        "| project wall s / PSS MB | data_processing,cltv wall s / PSS MB "
        "| project ÷ floor (wall, PSS) | project ÷ pandas (wall, PSS) "
        "| data_processing,cltv ÷ pandas (wall, PSS) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in results:
        rows = [(_label(size, number), r) for number, r in enumerate(size["pairs"], start=1)]
        if len(size["pairs"]) > 1:
            rows.append((f"{_size(size)}, median", size["median"]))
        for label, r in rows:
            cells = [
                f"{r[run]['wall_s']} / {r[run]['peak_pss_mb']}" if run in r else "—" for run in RUNS
            ]
            ratios = [
                f"{r[f'{_ratio_prefix(run)}wall_ratio_{baseline}']}×, "
                f"{r[f'{_ratio_prefix(run)}memory_ratio_{baseline}']}×"
                if f"{_ratio_prefix(run)}wall_ratio_{baseline}" in r
                else "—"
                for run, baseline in RATIOS
            ]
            lines.append(f"| {label} | {size['csv_mb']} | " + " | ".join(cells + ratios) + " |")
    staged = [
        (_label(size, number), r)
        for size in results
        for number, r in enumerate(size["pairs"], start=1)
        if "stages" in r
    ]
    if staged:
        names = list(staged[0][1]["stages"])
        lines += ["", "| rows | " + " | ".join(names) + " |", "|---:" * (len(names) + 1) + "|"]
        for label, r in staged:
            floor = r.get("floor", {}).get("wall_s")
            jobs = r.get("stage_jobs", {})
            cells = []
            for name in names:
                seconds = r["stages"].get(name, 0.0)
                # each stage against the whole run of the floor of the same round (cleaning:
                # the same scan and write)
                notes = [f"{seconds / floor:.2f}× floor"] if floor and name != "other" else []
                notes += [f"{jobs[name]} jobs"] if name in jobs else []
                cells.append(f"{seconds} s" + (f" ({', '.join(notes)})" if notes else ""))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(size: dict, number: int) -> str:
    return _size(size) if len(size["pairs"]) == 1 else f"{_size(size)}, pair {number}"


def _size(result: dict) -> str:
    return f"{result['rows']:,}" if isinstance(result["rows"], int) else result["rows"]


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
    parser.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="rounds of floor, project, pandas script, job per size; ratios are taken within "
        "a round and the figure is their median (1: one shot)",
    )
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be 1 or more")
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in args.rows:
        if args.only in (None, "floor") and not args.floor.exists():
            print(f"no Spark floor at {args.floor}: pass --floor PATH to compare with it")
        results.append(run_size(rows, args.workdir, args.only, args.floor, args.pairs))
        print(json.dumps(results[-1]), flush=True)
        print(table(results[-1:]), flush=True)  # each size's pairs as soon as they are done
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))
    if len(results) > 1:  # every size together (each was printed when it was done)
        print(table(results))
    failed = [size["rows"] for size in results for r in size["pairs"] for k in RUNS
              if r.get(k, {}).get("returncode", 0) != 0]  # fmt: skip
    if failed:
        sys.exit(f"a run failed (see the logs in {args.workdir}): rows {failed}")


if __name__ == "__main__":
    main()
