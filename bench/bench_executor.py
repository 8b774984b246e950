"""Executor benchmark (`make bench-executor`): trivial validations per second and latency with
every isolation layer on, for 1 and 2 workers, against two baselines measured in the same run:
a fresh `python -I -S` subprocess per program, and an unsandboxed in-process exec pool (the
official executor's design). Prints a markdown table with ratios.

"per CPU-s" divides the count by the CPU seconds all involved processes used, which is what
"per core" means on a shared machine where wall-clock rates depend on the neighbours."""

from __future__ import annotations

import concurrent.futures as cf
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.executor.engine import Engine, EngineLimits
from services.executor.sandbox import SandboxConfig, SandboxPair

N = int(os.environ.get("AZR_BENCH_N", "600"))
PROGRAM = "def f(a, b):\n    return [a + b, a * b]"
INPUT = "3, 4"
CLK = os.sysconf("SC_CLK_TCK")


def cpu_of(pids: list[int]) -> float:
    """utime+stime+cutime+cstime of processes (children they reaped included)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / CLK


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def item() -> dict[str, object]:
    return {"task_type": "deduction", "program": PROGRAM, "inputs": [INPUT]}


def bench_sandbox(workers: int, second: bool) -> dict[str, float]:
    engines = [
        Engine(
            EngineLimits(second_process=second),
            SandboxPair(SandboxConfig(), seeds=(2 * i, 2 * i + 1)),
        )
        for i in range(workers)
    ]
    for e in engines:
        e.start()
    # the serving processes (inside their PID namespaces): their own CPU and their reaped
    # children's; the stand-in processes the worker started only wait
    pids = [
        p.server_pid for e in engines for p in (e.pair.primary, e.pair.secondary) if p.server_pid
    ]
    try:
        for e in engines:
            e.validate([item()] * 20)  # warm
        lat = []
        for _ in range(100):
            t = time.perf_counter()
            engines[0].validate([item()])
            lat.append((time.perf_counter() - t) * 1000)
        c0, o0, t0 = cpu_of(pids), own_cpu(), time.perf_counter()
        per = N // workers

        def go(e: Engine) -> None:
            for start in range(0, per, 64):
                res = e.validate([item()] * min(64, per - start))
                assert all(r["valid"] for r in res)

        threads = [threading.Thread(target=go, args=(e,)) for e in engines]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        cpu = cpu_of(pids) - c0 + own_cpu() - o0
    finally:
        for e in engines:
            e.close()
    return _row(per * workers, wall, cpu, lat)


def _pool_validate(program: str, inp: str) -> str:
    ns: dict[str, object] = {}
    exec(program, ns)
    a = eval(f"f({inp})", ns)
    b = eval(f"f({inp})", ns)
    if repr(a) != repr(b):
        raise ValueError("non-deterministic")
    return repr(a)


def bench_pool(workers: int) -> dict[str, float]:
    with cf.ProcessPoolExecutor(workers) as pool:
        list(pool.map(_pool_validate, [PROGRAM] * 20, [INPUT] * 20))
        pids = list(pool._processes)
        lat = []
        for _ in range(100):
            t = time.perf_counter()
            pool.submit(_pool_validate, PROGRAM, INPUT).result()
            lat.append((time.perf_counter() - t) * 1000)
        c0, o0, t0 = cpu_of(pids), own_cpu(), time.perf_counter()
        futures = [pool.submit(_pool_validate, PROGRAM, INPUT) for _ in range(N)]
        for fut in futures:
            fut.result()
        wall = time.perf_counter() - t0
        cpu = cpu_of(pids) - c0 + own_cpu() - o0
    return _row(N, wall, cpu, lat)


def bench_subprocess(workers: int) -> dict[str, float]:
    code = f"{PROGRAM}\na = f({INPUT})\nb = f({INPUT})\nassert repr(a) == repr(b)\nprint(repr(a))"
    n = max(40, N // 10)

    def one() -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True, capture_output=True)
        return (time.perf_counter() - t) * 1000

    lat = [one() for _ in range(30)]
    o0, t0 = own_cpu(), time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: one(), range(n)))
    wall = time.perf_counter() - t0
    return _row(n, wall, own_cpu() - o0, lat)


_FORK_FLOOR = """
import os, resource, sys
import services.executor.forkserver as fs
n = int(sys.argv[1])
r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
for _ in range(n):
    pid = fs._fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = lambda a, b: b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime
print(cpu(r0, r1) + cpu(c0, c1))
"""


def bench_fork_floor() -> dict[str, float]:
    """The floor under any fork-per-program design here: fork + exit + wait of a process shaped
    like the fork-server (same imports, same raw fork), with no isolation and no work at all."""
    root = str(Path(__file__).resolve().parents[1])
    env = {"PYTHONPATH": root, "PATH": "/usr/bin:/bin"}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-S", "-c", _FORK_FLOOR, str(N)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    return _row(N, wall, float(out.stdout.strip()), [float("nan")])


def _row(n: int, wall: float, cpu: float, lat: list[float]) -> dict[str, float]:
    lat.sort()
    return {
        "per_s": n / wall,
        "per_cpu_s": n / cpu if cpu > 0 else float("nan"),
        "p50": statistics.median(lat),
        "p99": lat[int(0.99 * (len(lat) - 1))],
    }


def main() -> None:
    rows = []
    for workers in (1, 2):
        pool = bench_pool(workers)
        rows.append((f"in-process exec pool (no isolation), {workers}w", pool, pool))
        rows.append(
            (f"fresh `python -I -S` per program, {workers}w", bench_subprocess(workers), pool)
        )
        rows.append(
            (
                f"sandbox, all layers, 2nd-process check, {workers}w",
                bench_sandbox(workers, True),
                pool,
            )
        )
        rows.append(
            (f"sandbox, all layers, one process, {workers}w", bench_sandbox(workers, False), pool)
        )
    floor = bench_fork_floor()
    rows.append(("fork + exit only (no isolation, no work): the floor", floor, pool))
    print(f"{N} trivial validations (2 calls + repr each); load average {os.getloadavg()[0]:.1f}")
    print(
        "| setup | validations/s | per CPU-second | p50 ms | p99 ms | vs pool (per CPU-s) "
        "| of the fork floor (per CPU-s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r, base in rows:
        ratio = base["per_cpu_s"] / r["per_cpu_s"]
        of_floor = r["per_cpu_s"] / floor["per_cpu_s"]
        print(
            f"| {name} | {r['per_s']:.0f} | {r['per_cpu_s']:.0f} | {r['p50']:.2f} | "
            f"{r['p99']:.2f} | {ratio:.2f}x slower | {of_floor:.2f}x |"
        )


if __name__ == "__main__":
    main()
