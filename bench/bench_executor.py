"""Executor benchmark (`make bench-executor`): trivial validations per second and latency with
every isolation layer on, for 1 and 2 workers, against two baselines measured in the same run:
a fresh `python -I -S` subprocess per program, and an unsandboxed in-process exec pool (the
official executor's design). Prints a markdown table with ratios.

"per CPU-s" divides the count by the CPU seconds all involved processes used, which is what
"per core" means on a shared machine where wall-clock rates depend on the neighbours.

``--paired-root DIR`` runs the one-process row on two fork-servers behind one worker, one
from this checkout and one from DIR (say, an older commit), in alternating batches with a
fork-floor measurement in every round: per-round ratios, whose median holds still on a machine
whose speed moves from minute to minute.

``--http`` measures programs/s through HTTP ``POST /v1/run`` of a real executor service (API,
embedded Redis, Celery workers, fork-servers) that the bench starts itself; ``--http-root DIR``
adds a service started from another checkout (say, an older commit) as a baseline, measured
in the same run, rounds interleaved."""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.executor.engine import Engine, EngineLimits
from services.executor.sandbox import SandboxConfig, SandboxPair

N = int(os.environ.get("AZR_BENCH_N", "600"))  # --n overrides
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


_DISTINCT = itertools.count()


def item() -> dict[str, object]:
    """A validation of a program and an input seen for the first time, as in training (no
    cache can help)."""
    k = next(_DISTINCT)
    return {"task_type": "deduction", "program": f"{PROGRAM}\n\n\nK = {k}", "inputs": [f"3, {k}"]}


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
            e.validate([item() for _ in range(20)])  # warm
        lat = []
        for _ in range(100):
            t = time.perf_counter()
            engines[0].validate([item()])
            lat.append((time.perf_counter() - t) * 1000)
        c0, o0, t0 = cpu_of(pids), own_cpu(), time.perf_counter()
        per = N // workers

        def go(e: Engine) -> None:
            for start in range(0, per, 64):
                res = e.validate([item() for _ in range(min(64, per - start))])
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
print(cpu(r0, r1) / n * 1e6, cpu(c0, c1) / n * 1e6, (c1.ru_minflt - c0.ru_minflt) / n)
"""


def _fork_floor() -> tuple[float, float, float, float]:
    """(wall s, parent CPU µs per fork, child CPU µs per fork, child faults per fork)."""
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
    parent, child, faults = (float(x) for x in out.stdout.split())
    return time.perf_counter() - t0, parent, child, faults


def bench_fork_floor() -> dict[str, float]:
    """The floor under any fork-per-program design here: fork + exit + wait of a process shaped
    like the fork-server (same imports, same raw fork), with no isolation and no work at all."""
    wall, parent, child, _ = _fork_floor()
    return _row(N, wall, (parent + child) * N / 1e6, [float("nan")])


def _row(n: int, wall: float, cpu: float, lat: list[float]) -> dict[str, float]:
    lat.sort()
    return {
        "per_s": n / wall,
        "per_cpu_s": n / cpu if cpu > 0 else float("nan"),
        "p50": statistics.median(lat),
        "p99": lat[int(0.99 * (len(lat) - 1))],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


class HttpExecutor:
    """`services.executor.main.serve` of the checkout at `root` on a free loopback port, with its
    own data folder (embedded Redis) and `workers` Celery worker processes."""

    def __init__(self, root: str, workers: int) -> None:
        self.root, self.workers = root, workers
        self.port = _free_port()
        self.data = tempfile.TemporaryDirectory(prefix="azr-bench-http-")
        code = (
            "import signal, sys\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
            "from services.executor.main import serve\n"
            f"serve(host='127.0.0.1', port={self.port})\n"
        )
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("AZR_") and k != "PYTHONPATH"
        }
        env.update(
            PYTHONPATH=root,
            AZR_DATA_DIR=self.data.name,
            AZR_EXECUTOR__WORKERS=str(workers),
            AZR_LOG_LEVEL="WARNING",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(self.data.name) / "server.log", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        log = (Path(self.data.name) / "server.log").read_text(errors="replace")
        raise RuntimeError(f"the executor at {self.root} did not become ready:\n{log[-3000:]}")

    def close(self) -> None:
        pids = _tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        for pid in pids:  # whatever it started and left behind (only these pids)
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()
        self.data.cleanup()


def bench_http(server: HttpExecutor, n: int, batch: int, clients: int) -> dict[str, float]:
    """`n` programs through POST /v1/run in batches of `batch` items, `clients` requests in
    flight. CPU: every process of the service (API, Redis, workers, fork-servers, children)."""
    import httpx

    def post(http: httpx.Client) -> float:
        # programs and inputs seen for the first time, as in training
        items = [item() for _ in range(batch)]
        body = {"items": [{"program": it["program"], "input": it["inputs"][0]} for it in items]}  # type: ignore[index]
        t = time.perf_counter()
        r = http.post(f"{server.url}/v1/run", json=body, timeout=600)
        r.raise_for_status()
        assert all(it["status"] == "ok" for it in r.json()["results"]), r.text[:500]
        return (time.perf_counter() - t) * 1000

    with httpx.Client() as http:
        for _ in range(3):
            post(http)  # warm
    pids = _tree(server.proc.pid)
    requests = max(1, n // batch)
    c0, t0 = cpu_of(pids), time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        https = [httpx.Client() for _ in range(clients)]
        lat = list(pool.map(lambda i: post(https[i % clients]), range(requests)))
        for h in https:
            h.close()
    wall = time.perf_counter() - t0
    cpu = cpu_of(pids) - c0
    return _row(requests * batch, wall, cpu, lat)


def main_http(args: argparse.Namespace) -> None:
    here = str(Path(__file__).resolve().parents[1])
    roots = [("this checkout", here)] + [(f"`{r}`", str(Path(r).resolve())) for r in args.http_root]
    servers = []
    try:
        for _, root in roots:
            servers.append(HttpExecutor(root, args.http_workers))
        for s in servers:
            s.wait_ready()
        results: list[list[dict[str, float]]] = [[] for _ in roots]
        for _ in range(args.rounds):
            for i, s in enumerate(servers):
                results[i].append(bench_http(s, args.n, args.batch, args.clients))
    finally:
        for s in servers:
            s.close()
    print(
        f"HTTP POST /v1/run: {args.n} trivial programs per round, batches of {args.batch}, "
        f"{args.clients} in flight, {args.http_workers} worker processes, {args.rounds} "
        f"round(s) interleaved; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| service | round | programs/s | per CPU-second | request p50 ms "
        "| this checkout vs it (programs/s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for k in range(args.rounds):
        ours = results[0][k]
        for (name, _), rows in zip(roots, results, strict=True):
            r = rows[k]
            print(
                f"| {name} | {k + 1} | {r['per_s']:.0f} | {r['per_cpu_s']:.0f} | "
                f"{r['p50']:.0f} | {ours['per_s'] / r['per_s']:.2f}x |"
            )
    if args.rounds > 1:
        for (name, _), rows in zip(roots, results, strict=True):
            total = sum(r["per_s"] for r in rows) / len(rows)
            print(f"mean over rounds, {name}: {total:.0f} programs/s")


def _cpu_and_faults(pid: int) -> tuple[float, float, int, int]:
    """(own CPU s, reaped children's CPU s, own minor faults, children's minor faults)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own, children = (int(f[11]) + int(f[12])) / CLK, (int(f[13]) + int(f[14])) / CLK
    return own, children, int(f[7]), int(f[8])


def main_split() -> None:
    """Where one validation's CPU goes (one process, one worker): the fork-server, its
    children and the worker, with minor faults, next to the floor's fork (parent) and child."""
    engine = Engine(EngineLimits(second_process=False), SandboxPair(SandboxConfig(), seeds=(0, 1)))
    engine.start()
    try:
        pid = engine.pair.primary.server_pid
        assert pid, "no fork-server"
        engine.validate([item() for _ in range(40)])  # warm
        s0, o0 = _cpu_and_faults(pid), own_cpu()
        for start in range(0, N, 64):
            engine.validate([item() for _ in range(min(64, N - start))])
        s1, o1 = _cpu_and_faults(pid), own_cpu()
    finally:
        engine.close()
    server, children = (s1[0] - s0[0]) / N * 1e6, (s1[1] - s0[1]) / N * 1e6
    worker = (o1 - o0) / N * 1e6
    _, parent, child, child_faults = _fork_floor()
    print(f"{N} validations, one process, 1 worker; load average {os.getloadavg()[0]:.1f}")
    print("| process | CPU µs per validation | minor faults per validation |")
    print("|---|---:|---:|")
    print(f"| fork-server | {server:.0f} | {(s1[2] - s0[2]) / N:.0f} |")
    print(f"| its children | {children:.0f} | {(s1[3] - s0[3]) / N:.0f} |")
    print(f"| worker (static checks, frames) | {worker:.0f} | - |")
    print(f"| all | {server + children + worker:.0f} | - |")
    print(f"| floor: fork (parent) | {parent:.0f} | - |")
    print(f"| floor: child (exit) | {child:.0f} | {child_faults:.0f} |")
    print(f"sandbox / floor CPU: {(server + children + worker) / (parent + child):.2f}x")


def main_paired(args: argparse.Namespace) -> None:
    """The one-process row, 1 worker, for this checkout and `args.paired_root` side by side:
    `args.rounds` rounds, each a floor measurement and a batch of `N` validations on each
    fork-server (the order alternating). The worker is this checkout's for both, so a change
    on the worker's side shows in the worker column only."""
    here = str(Path(__file__).resolve().parents[1])
    roots = [("this checkout", here), (f"`{args.paired_root}`", str(Path(args.paired_root)))]
    engines = []
    try:
        for i, (_, root) in enumerate(roots):
            config = SandboxConfig(code_root=root)
            engines.append(
                Engine(EngineLimits(second_process=False), SandboxPair(config, (2 * i, 2 * i + 1)))
            )
            engines[-1].start()
        for e in engines:
            e.validate([item() for _ in range(64)])  # warm
        # per round and engine: (server µs, children µs, worker µs, server faults, children's)
        rows: list[list[tuple[float, ...]]] = [[] for _ in roots]
        floors = []
        for r in range(args.rounds):
            _, parent, child, _ = _fork_floor()
            floors.append(parent + child)
            for k in range(len(engines)) if r % 2 == 0 else reversed(range(len(engines))):
                pid = engines[k].pair.primary.server_pid
                assert pid, "no fork-server"
                s0, o0 = _cpu_and_faults(pid), own_cpu()
                for start in range(0, N, 64):
                    engines[k].validate([item() for _ in range(min(64, N - start))])
                s1, o1 = _cpu_and_faults(pid), own_cpu()
                rows[k].append(
                    (
                        (s1[0] - s0[0]) / N * 1e6,
                        (s1[1] - s0[1]) / N * 1e6,
                        (o1 - o0) / N * 1e6,
                        (s1[2] - s0[2]) / N,
                        (s1[3] - s0[3]) / N,
                    )
                )
    finally:
        for e in engines:
            e.close()

    def quartiles(xs: list[float]) -> str:
        xs = sorted(xs)
        q = len(xs) // 4
        return f"{statistics.median(xs):.3f} ({xs[q]:.3f}-{xs[-1 - q]:.3f})"

    print(
        f"one process, 1 worker: {args.rounds} rounds of {N} validations on each fork-server "
        f"and a fork floor of {N}; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| fork-server from | server µs | children µs | worker µs | faults (server/children) "
        "| of the floor: per-round median (quartiles) | CPU vs this checkout, per round |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals = [[sum(x[:3]) for x in rows[k]] for k in range(len(roots))]
    for k, (name, _) in enumerate(roots):
        mean = [statistics.mean(x[j] for x in rows[k]) for j in range(5)]
        of_floor = [f / t for f, t in zip(floors, totals[k], strict=True)]
        vs = [t / t0 for t, t0 in zip(totals[k], totals[0], strict=True)]
        print(
            f"| {name} | {mean[0]:.0f} | {mean[1]:.0f} | {mean[2]:.0f} | "
            f"{mean[3]:.0f} / {mean[4]:.0f} | {quartiles(of_floor)} | {quartiles(vs)} |"
        )


ROWS = ("pool", "subprocess", "second", "one", "floor")


def main() -> None:
    global N
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=N, help="validations (programs) per row")
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help=f"comma-separated subset of {','.join(ROWS)} (the floor is always measured)",
    )
    parser.add_argument("--workers", default="1,2", help="worker counts for the in-process rows")
    parser.add_argument("--http", action="store_true", help="measure POST /v1/run instead")
    parser.add_argument(
        "--http-root",
        action="append",
        default=[],
        help="another checkout whose executor is measured in the same run as a baseline",
    )
    parser.add_argument(
        "--paired-root",
        help="another checkout: the one-process row on its fork-server and this one's, "
        "alternating, with the floor measured every round (--rounds, 40 or more)",
    )
    parser.add_argument("--http-workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--batch", type=int, default=64, help="items per /v1/run request")
    parser.add_argument("--clients", type=int, default=4, help="requests in flight")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds (--http, --paired-root)"
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="where one validation's CPU goes: fork-server, children, worker, and the floor's",
    )
    args = parser.parse_args()
    N = args.n
    if args.split:
        main_split()
        return
    if args.http:
        main_http(args)
        return
    if args.paired_root:
        main_paired(args)
        return
    wanted = set(args.rows.split(","))
    rows = []
    pool: dict[str, float] = {}
    # the floor is measured before every sandbox row and once at the end, and the median is
    # the reference: one short measurement swings with the neighbours' load on a shared machine
    floors: list[dict[str, float]] = []

    def sandbox_row(workers: int, second: bool) -> dict[str, float]:
        floors.append(bench_fork_floor())
        return bench_sandbox(workers, second)

    for workers in (int(w) for w in args.workers.split(",")):
        pool = bench_pool(workers)
        if "pool" in wanted:
            rows.append((f"in-process exec pool (no isolation), {workers}w", pool, pool))
        if "subprocess" in wanted:
            rows.append(
                (f"fresh `python -I -S` per program, {workers}w", bench_subprocess(workers), pool)
            )
        if "second" in wanted:
            rows.append(
                (
                    f"sandbox, all layers, 2nd-process check, {workers}w",
                    sandbox_row(workers, True),
                    pool,
                )
            )
        if "one" in wanted:
            rows.append(
                (
                    f"sandbox, all layers, one process, {workers}w",
                    sandbox_row(workers, False),
                    pool,
                )
            )
    floors.append(bench_fork_floor())
    floor = sorted(floors, key=lambda r: r["per_cpu_s"])[len(floors) // 2]
    rows.append(("fork + exit only (no isolation, no work): the floor", floor, pool))
    spread = ", ".join(f"{r['per_cpu_s']:.0f}" for r in floors)
    print(f"{N} trivial validations (2 calls + repr each); load average {os.getloadavg()[0]:.1f}")
    print(f"fork floor per CPU-second, each measurement: {spread} (the median is used)")
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
