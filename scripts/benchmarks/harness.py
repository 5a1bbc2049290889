"""The benchmarks' one way of measuring (standard library only: the PyTorch side imports it too).

- A measurement runs in a fresh process (`measure_in_process`), which prints its result as one JSON line last
  (`report`): no compile cache, memory pool or thread pool of one measurement helps the next.
- A timing is the median of `repeats` calls after `warmup` untimed ones (`median_seconds`); the first call of a
  graph (its compile) is timed apart by the caller (`timed_once`).
- This host's speed drifts by up to 1.5x over minutes: `round_robin` measures every job once per round, in the
  same order each round, so a slow spell hits every job alike, and `median_round` keeps each job's median round.
- A change's before and after, where a few percent matter: `lockstep` keeps one serving process per side (`serve`)
  and calls them in turn, call by call, so both see the same moment of the host; `ratio_summary` gives the median
  of the per-pair ratios. Round-robin fresh processes put the same code's rounds 15% apart here.
"""
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
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


def serve(fn, warmup: int = 3):
    """A serving process's loop (see `lockstep`): warm up, say "ready", then per line read ("call" or "call N") N
    untimed calls of fn and one timed: its wall time, and the CPU time of all the process's threads during it."""
    for _ in range(warmup):
        fn()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        for _ in range(int(words[1]) if len(words) > 1 else 0):
            fn()
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start}),
              flush=True)


class _Server:
    """A serving process and a thread that hands its output lines over through a queue (a timeout on a readline
    of a pipe needs one: select() misses lines already buffered by the previous readline)."""

    def __init__(self, command, env):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=env)
        self.lines = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.process.stdout] + [self.lines.put("")],
                         daemon=True).start()

    def answer(self, timeout_s: float) -> dict:
        """The next JSON line (or "ready") it prints, skipping its other output."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"serving process {self.process.args[-1][:80]} did not answer in {timeout_s:.0f} s")
            if not line:
                raise RuntimeError(f"serving process {self.process.args[-1][:80]} ended")
            if line.strip() == "ready":
                return {"ready": True}
            if line.startswith("{"):
                return json.loads(line)

    def call(self, timeout_s: float, warm_calls: int = 0) -> dict:
        self.process.stdin.write(f"call {warm_calls}\n")
        self.process.stdin.flush()
        return self.answer(timeout_s)


def lockstep(commands, pairs: int, envs=None, timeout_s: float = 600.0, warm_calls: int = 0) -> list:
    """[[{seconds, cpu_seconds} of each call] per command]: every command a serving process (`serve`), started
    together, then called in turn `pairs` times, the order reversed every other round; while one runs, the others
    wait on stdin. `warm_calls`: untimed calls before each timed one, so that it finds its caches as back-to-back
    requests leave them rather than as the other processes did."""
    servers = [_Server(command, env) for command, env in zip(commands, envs or [None] * len(commands))]
    try:
        for server in servers:
            server.answer(timeout_s)
        times = [[] for _ in servers]
        for round_index in range(pairs):
            order = range(len(servers)) if round_index % 2 == 0 else reversed(range(len(servers)))
            for index in order:
                times[index].append(servers[index].call(timeout_s, warm_calls))
        return times
    finally:
        for server in servers:
            server.process.kill()
            server.process.wait()


def ratio_summary(numerators, denominators) -> dict:
    """Median and quartiles of the per-pair ratios numerator / denominator (e.g. before's time / after's)."""
    ratios = sorted(a / b for a, b in zip(numerators, denominators))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {"median": statistics.median(ratios), "q1": quartiles[0], "q3": quartiles[2], "pairs": len(ratios)}
