"""Shared helpers of the benchmarks: machine figures, process CPU and memory, percentiles."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {model}, {memory:.0f} GiB, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def header(title: str, reproduce: str) -> None:
    print(f"# {title}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {machine()}")
    print(f"reproduce: {reproduce}\n")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (every thread, those that ended too), in
    nanoseconds from the kernel's CPU clock of that process (Linux: clock_getcpuclockid's
    clock, ``((~pid) << 3) | 2``); else from /proc in clock ticks (10 ms, too coarse for
    a window with few journeys)."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        pass
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wait_http(url: str, timeout: float = 20.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def pizza_probe(*args: str, log=subprocess.DEVNULL) -> subprocess.Popen:
    """``pizza-probe ARGS`` as a child process with this Python."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}
    return subprocess.Popen([sys.executable, "-m", "exporter", *args], stdout=log, stderr=log,
                            env=env, cwd=REPO)


def blackbox_exporter(port: int, config_path: str) -> subprocess.Popen:
    binary = "prometheus-blackbox-exporter"
    process = subprocess.Popen([binary, f"--config.file={config_path}",
                                f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/metrics")
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port_block(count: int, host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A first port P such that P..P+count-1 are all free on ``host`` (checked, not reserved)."""
    import random

    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(20000, 60000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise SystemExit(f"no block of {count} free ports found on {host}")


def threads_and_fds(pid: int) -> tuple[int, int]:
    """A process's thread count and open file descriptors, from /proc."""
    threads = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return threads, fds


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()
