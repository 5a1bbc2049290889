"""The benchmarks' one way of measuring (standard library only: the PyTorch side imports it too).

- A measurement runs in a fresh process (`measure_in_process`), which prints its result as one JSON line last
  (`report`): no compile cache, memory pool or thread pool of one measurement helps the next.
- A timing is the median of `repeats` calls after `warmup` untimed ones (`median_seconds`); the first call of a
  graph (its compile) is timed apart by the caller (`timed_once`).
- This host's speed drifts by up to 1.5x over minutes: `round_robin` measures every job once per round, in the
  same order each round, so a slow spell hits every job alike, and `median_round` keeps each job's median round.
"""
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def median_seconds(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_once(fn):
    """(fn's result, seconds it took): a first call, compile included."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def peak_rss_mib() -> float:
    """This process's resident high-water mark (framework included)."""
    with open("/proc/self/status", encoding="utf-8") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def report(result: dict):
    """A measurement process's answer: one JSON line, the last it prints."""
    print(json.dumps(result), flush=True)


def measure_in_process(command, env=None) -> dict:
    """Run `command` (a measurement process) and return the JSON of its last line, or {"error": its last line of
    stderr} when it failed or printed none."""
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return json.loads(lines[-1])


def round_robin(jobs, rounds: int, measure, describe=str) -> dict:
    """{job: [its result in each round]}: `measure(job)` for every job, `rounds` times over, in the same order each
    round; each result is echoed on stderr as it comes."""
    results = {job: [] for job in jobs}
    for round_index in range(rounds):
        for job in jobs:
            result = measure(job)
            print(f"  round {round_index + 1} {describe(job)} {json.dumps(result)}", file=sys.stderr, flush=True)
            results[job].append(result)
    return results


def median_round(results, value) -> dict:
    """The round whose `value(result)` is the median of the rounds that succeeded (the lower middle one of an even
    count), with every such round's value under "rounds" when there were several; the last error when none did."""
    good = sorted((result for result in results if "error" not in result), key=value)
    if not good:
        return results[-1]
    kept = dict(good[(len(good) - 1) // 2])
    if len(results) > 1:
        kept["rounds"] = [round(value(result), 2) for result in good]
    return kept
