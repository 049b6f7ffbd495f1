#!/usr/bin/env python3
"""Fleet mode: a real Prometheus scrapes /probe for 200 targets (one simulator on 200 ports) at a
30 s interval. Reports journeys per second sustained, the exporter's CPU and memory, and the
scrape durations Prometheus recorded.

    .venv/bin/python bench/fleet.py --duration 5m --targets 200 --interval 30s
(needs Debian's prometheus)

Three processes of their own, so that each one's CPU is its own: ``pizza-probe simulate
--extra-ports N-1`` (the same shop on N loopback ports), ``pizza-probe serve --config.file``
(module ``fleet``, min_interval below the scrape interval, an anchored pattern admitting the
simulator's URLs), and Prometheus with one job: ``/probe`` for the N targets from a file_sd JSON
file, with the usual relabelling, so Prometheus spreads the targets over the interval as in
production. After the exporter's idle CPU is measured and one interval of warm-up has passed,
the measured window starts. CPU is user+system time from /proc; the machine's own busy time is
reported too, since other processes may share it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import requests
import yaml
from common import (
    cpu_seconds,
    free_port,
    free_port_block,
    header,
    loadavg,
    machine_cpu_seconds,
    median,
    percentile,
    pizza_probe,
    rss_bytes,
    stop,
    threads_and_fds,
    wait_http,
)

from exporter.config import parse_duration

JOB = "pizza-fleet"
MODULE = "fleet"


def duration(text: str) -> float:
    return parse_duration(text, name="duration")


def prom_duration(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"


def exporter_metrics(port: int) -> dict[str, float]:
    """The exporter's own /metrics: fleet counters, journeys in flight, process figures."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for name, labels, value in re.findall(
            r"^((?:pizza_probe_fleet|process)_\w+)(\{[^}]*\})? (\S+)$", text, re.M):
        values[name + (labels or "")] = float(value)
    return values


def journeys(values: dict, outcome: str = "journey") -> float:
    return values.get(f'pizza_probe_fleet_probes_total{{outcome="{outcome}"}}', 0.0)


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str, at: float | None = None) -> list:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        answer = requests.get(self.url + "/api/v1/query", params=params, timeout=30).json()
        if answer.get("status") != "success":
            raise SystemExit(f"Prometheus query failed: {expr!r}: {answer.get('error')}")
        return answer["data"]["result"]

    def raw(self, metric: str, start: float, end: float) -> list[float]:
        """Every stored sample of ``metric`` for the job in (start, end], all targets."""
        window = max(1, int(end - start))
        values = []
        for series in self.query(f'{metric}{{job="{JOB}"}}[{window}s]', at=end):
            values += [float(v) for _, v in series["values"]]
        return values

    def active_targets(self) -> int:
        data = requests.get(self.url + "/api/v1/targets", params={"state": "active"},
                            timeout=10).json()["data"]
        return sum(1 for t in data["activeTargets"] if t["labels"].get("job") == JOB)


class Children:
    """The benchmark's processes, each with its log in the work directory; stopped in reverse."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.started: list[tuple[str, subprocess.Popen, object]] = []

    def add(self, name: str, start) -> subprocess.Popen:
        log = open(os.path.join(self.workdir, f"{name}.log"), "w")
        process = start(log)
        self.started.append((name, process, log))
        return process

    def check(self) -> None:
        for name, process, _ in self.started:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, size: int = 2000) -> str:
        with open(os.path.join(self.workdir, f"{name}.log"), errors="replace") as handle:
            return handle.read()[-size:]

    def stop_all(self) -> None:
        for _name, process, log in reversed(self.started):
            if process.poll() is None:
                stop(process)  # SIGTERM, 10 s, then SIGKILL
            log.close()
        self.started.clear()


def sample(pids: dict[str, int], exporter_port: int) -> dict:
    now = {"t": time.monotonic(), "wall": time.time(), "load": loadavg()}
    for name, pid in pids.items():
        now[name] = {"cpu": cpu_seconds(pid), "rss": rss_bytes(pid)}
    now["exporter"]["threads"], now["exporter"]["fds"] = threads_and_fds(pids["exporter"])
    now["bench"] = {"cpu": sum(os.times()[:2])}
    now["machine_busy"], now["machine_total"] = machine_cpu_seconds()
    try:
        now["metrics"] = exporter_metrics(exporter_port)
    except requests.RequestException as exc:
        now["metrics"] = {}
        now["metrics_error"] = str(exc)
    return now


def run_window(children: Children, pids: dict, port: int, seconds: float, every: float,
               into: list | None = None) -> None:
    """Sleep ``seconds`` in steps of ``every``, checking the children (and sampling ``into``)."""
    end = time.monotonic() + seconds
    while True:
        children.check()
        if into is not None:
            into.append(sample(pids, port))
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(every, left))


def stats(values: list[float]) -> dict:
    return {"n": len(values), "median": median(values), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values) if values else float("nan")}


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=duration, default=300.0,
                        help="measured window, after the warm-up (default 5m)")
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--interval", type=duration, default=30.0, help="scrape interval")
    parser.add_argument("--scrape-timeout", type=duration, default=25.0,
                        help="Prometheus' scrape_timeout (at most the interval)")
    parser.add_argument("--min-interval", type=duration, default=25.0,
                        help="the module's min_interval (below the interval: every scrape a journey)")
    parser.add_argument("--warmup", type=duration, default=None,
                        help="time after Prometheus is ready before the window (default: one interval)")
    parser.add_argument("--idle", type=duration, default=10.0,
                        help="measure the exporter's idle CPU this long before Prometheus starts")
    parser.add_argument("--sample-every", type=duration, default=5.0)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, TSDB)")
    args = parser.parse_args()
    if not shutil.which("prometheus"):
        raise SystemExit("prometheus is missing: apt-get install prometheus")
    if not 1 <= args.targets <= 1000:
        raise SystemExit("--targets: 1 to 1000")
    timeout = min(args.scrape_timeout, args.interval)
    warmup = args.interval if args.warmup is None else args.warmup
    header("fleet mode through /probe",
           f"bench/fleet.py --duration {args.duration:g}s --targets {args.targets} "
           f"--interval {args.interval:g}s --scrape-timeout {timeout:g}s "
           f"--min-interval {args.min_interval:g}s")

    def terminated(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    load_before = loadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
          f"(on {os.cpu_count()} cores; other processes may share this machine)", flush=True)
    workdir = tempfile.mkdtemp(prefix="pizza-fleet-bench-")
    children = Children(workdir)
    try:
        result = bench(args, timeout, warmup, workdir, children)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process", flush=True)
        return 130
    finally:
        children.stop_all()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["load_before"] = load_before
    report(args, result)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2, default=float)
        print(f"\nJSON written to {args.json}")
    return 0


def bench(args, timeout: float, warmup: float, workdir: str, children: Children) -> dict:
    n = args.targets
    base = free_port_block(n)
    others: list[int] = []
    while len(others) < 3:  # the factory, the exporter, Prometheus: none inside the block
        port = free_port()
        if not base <= port < base + n and port not in others:
            others.append(port)
    factory_port, exporter_port, prom_port = others
    urls = [f"http://127.0.0.1:{base + i}" for i in range(n)]

    sim = children.add("simulator", lambda log: pizza_probe(
        "simulate", "--listen", f"127.0.0.1:{base}", "--factory-listen", f"127.0.0.1:{factory_port}",
        "--extra-ports", str(n - 1), "--log.level", "warning", log=log))
    wait_http(urls[0] + "/", timeout=30)
    wait_http(urls[-1] + "/", timeout=30)

    modules_path = os.path.join(workdir, "modules.yml")
    with open(modules_path, "w") as handle:
        yaml.safe_dump({
            "modules": {MODULE: {"factory_url": f"http://127.0.0.1:{factory_port}",
                                 "min_interval": f"{args.min_interval:g}s"}},
            # anchored (fullmatch) to the simulator's loopback ports
            "allowed_target_patterns": [r"http://127\.0\.0\.1:[0-9]{4,5}"],
        }, handle)
    exporter = children.add("exporter", lambda log: pizza_probe(
        "serve", "--config.file", modules_path, "--listen", f"127.0.0.1:{exporter_port}",
        "--log.level", "warning", log=log))
    wait_http(f"http://127.0.0.1:{exporter_port}/healthz", timeout=30)
    check = requests.get(f"http://127.0.0.1:{exporter_port}/probe",
                         params={"target": urls[-1], "module": MODULE}, timeout=30)
    if check.status_code != 200 or "pizza_probe_success 1" not in check.text:
        raise SystemExit(f"a first /probe did not succeed ({check.status_code}):\n{check.text[:2000]}")

    pids = {"exporter": exporter.pid, "simulator": sim.pid}
    print(f"simulator: {n} service URLs on 127.0.0.1:{base}-{base + n - 1}, factory :{factory_port}; "
          f"exporter :{exporter_port}; measuring idle CPU for {args.idle:g}s", flush=True)
    idle0 = sample(pids, exporter_port)
    run_window(children, pids, exporter_port, args.idle, args.sample_every)
    idle1 = sample(pids, exporter_port)
    idle_rate = (idle1["exporter"]["cpu"] - idle0["exporter"]["cpu"]) / (idle1["t"] - idle0["t"])

    with open(os.path.join(workdir, "targets.json"), "w") as handle:
        json.dump([{"targets": urls, "labels": {"fleet": "bench"}}], handle)
    config = {
        "global": {"scrape_interval": prom_duration(args.interval),
                   "scrape_timeout": prom_duration(timeout),
                   "evaluation_interval": prom_duration(args.interval)},
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/probe",
            "params": {"module": [MODULE]},
            "file_sd_configs": [{"files": [os.path.join(workdir, "targets.json")]}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{exporter_port}"},
            ],
        }],
    }
    prom_config = os.path.join(workdir, "prometheus.yml")
    with open(prom_config, "w") as handle:
        yaml.safe_dump(config, handle)
    prom_url = f"http://127.0.0.1:{prom_port}"
    prometheus = children.add("prometheus", lambda log: subprocess.Popen(
        [shutil.which("prometheus"), f"--config.file={prom_config}",
         f"--storage.tsdb.path={os.path.join(workdir, 'tsdb')}",
         f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=subprocess.STDOUT))
    wait_http(prom_url + "/-/ready", timeout=60)
    pids["prometheus"] = prometheus.pid
    prom = Prom(prom_url)
    print(f"prometheus :{prom_port} ready; warm-up {warmup:g}s, then a {args.duration:g}s window",
          flush=True)
    run_window(children, pids, exporter_port, warmup, args.sample_every)

    discovered = prom.active_targets()
    samples: list[dict] = []
    run_window(children, pids, exporter_port, args.duration, args.sample_every, samples)
    first, last = samples[0], samples[-1]
    time.sleep(1)  # let the last scrapes of the window land in the TSDB
    figures = {name: prom.raw(name, first["wall"], last["wall"]) for name in (
        "scrape_duration_seconds", "up", "pizza_probe_success", "pizza_probe_duration_seconds",
        "pizza_probe_result_age_seconds")}
    failures = prom.query(f'count by (step, reason) (last_over_time(pizza_probe_failure_info'
                          f'{{job="{JOB}"}}[{int(last["wall"] - first["wall"])}s]))', at=last["wall"])
    exporter_log = children.tail("exporter")
    return summarize(args, n, timeout, idle_rate, discovered, samples, figures, failures,
                     exporter_log)


def summarize(args, n, timeout, idle_rate, discovered, samples, figures, failures,
              exporter_log) -> dict:
    first, last = samples[0], samples[-1]
    window = last["t"] - first["t"]

    def delta(name: str) -> float:
        return last[name]["cpu"] - first[name]["cpu"]

    outcomes = {o: journeys(last["metrics"], o) - journeys(first["metrics"], o)
                for o in ("journey", "cached", "joined", "refused", "busy")}
    rates = [(journeys(b["metrics"]) - journeys(a["metrics"])) / (b["t"] - a["t"])
             for a, b in itertools.pairwise(samples) if a["metrics"] and b["metrics"]]
    in_flight = [s["metrics"].get("pizza_probe_fleet_journeys_in_flight", 0.0)
                 for s in samples if s["metrics"]]
    machine_busy = last["machine_busy"] - first["machine_busy"]
    ours = sum(delta(name) for name in ("exporter", "simulator", "prometheus", "bench"))
    scrapes = len(figures["up"])
    j = outcomes["journey"]
    cpu = delta("exporter")
    per_journey = cpu / j if j else float("nan")
    marginal = (cpu - idle_rate * window) / j if j else float("nan")
    rss = [s["exporter"]["rss"] for s in samples]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "targets": n, "discovered": discovered, "interval": args.interval,
        "scrape_timeout": timeout, "min_interval": args.min_interval, "window_seconds": window,
        "samples": len(samples),
        "journeys_per_second": j / window, "expected_per_second": n / args.interval,
        "journeys_per_second_per_sample": {"min": min(rates, default=float("nan")),
                                           "median": median(rates),
                                           "max": max(rates, default=float("nan"))},
        "outcomes": outcomes,
        "in_flight": {"median": median(in_flight), "max": max(in_flight, default=float("nan"))},
        "exporter": {
            "cpu_seconds": cpu, "cpu_percent_of_core": cpu / window * 100,
            "idle_cpu_percent_of_core": idle_rate * 100,
            "cpu_ms_per_journey": per_journey * 1000, "marginal_cpu_ms_per_journey": marginal * 1000,
            "rss_median_mib": median(rss) / 2**20, "rss_max_mib": max(rss) / 2**20,
            "rss_first_mib": rss[0] / 2**20, "rss_last_mib": rss[-1] / 2**20,
            "threads_max": max(s["exporter"]["threads"] for s in samples),
            "fds_first": first["exporter"]["fds"], "fds_last": last["exporter"]["fds"],
            "fds_max": max(s["exporter"]["fds"] for s in samples),
        },
        "simulator": {"cpu_percent_of_core": delta("simulator") / window * 100,
                      "cpu_ms_per_journey": delta("simulator") / j * 1000 if j else float("nan"),
                      "rss_max_mib": max(s["simulator"]["rss"] for s in samples) / 2**20},
        "prometheus": {"cpu_percent_of_core": delta("prometheus") / window * 100,
                       "cpu_ms_per_scrape": delta("prometheus") / scrapes * 1000 if scrapes else float("nan"),
                       "rss_max_mib": max(s["prometheus"]["rss"] for s in samples) / 2**20},
        "bench_cpu_percent_of_core": delta("bench") / window * 100,
        "machine": {"cores": os.cpu_count(),
                    "busy_cores": machine_busy / window,
                    "others_cores": (machine_busy - ours) / window},
        "scrapes": scrapes, "expected_scrapes": n * window / args.interval,
        "scrape_duration": stats(figures["scrape_duration_seconds"]),
        "journey_duration": stats(figures["pizza_probe_duration_seconds"]),
        "up_fraction": sum(figures["up"]) / scrapes if scrapes else float("nan"),
        "success_fraction": (sum(figures["pizza_probe_success"]) / len(figures["pizza_probe_success"])
                             if figures["pizza_probe_success"] else float("nan")),
        "success_samples": len(figures["pizza_probe_success"]),
        "reused_results": sum(1 for age in figures["pizza_probe_result_age_seconds"] if age > 0),
        "failures": {f'{r["metric"].get("step")}/{r["metric"].get("reason")}': float(r["value"][1])
                     for r in failures},
        "load_after": loadavg(),
        "load_during_max": max(s["load"][0] for s in samples),
        "exporter_log_tail": exporter_log[-1000:],
    }


def report(args, r: dict) -> None:
    e, sd, jd = r["exporter"], r["scrape_duration"], r["journey_duration"]
    per = r["journeys_per_second_per_sample"]
    print(f"\n{r['targets']} targets ({r['discovered']} discovered by Prometheus), interval "
          f"{r['interval']:g}s, scrape timeout {r['scrape_timeout']:g}s, min_interval "
          f"{r['min_interval']:g}s; window {r['window_seconds']:.0f}s after the warm-up\n")
    print("| figure | value |")
    print("|---|---|")
    rows = [
        ("journeys per second (expected targets / interval)",
         f"**{r['journeys_per_second']:.2f}** ({r['expected_per_second']:.2f})"),
        (f"journeys per second, per {args.sample_every:g}s sample: min / median / max",
         f"{per['min']:.2f} / {per['median']:.2f} / {per['max']:.2f}"),
        ("/probe outcomes in the window: journey / cached / joined / refused / busy",
         " / ".join(f"{r['outcomes'][o]:.0f}" for o in ("journey", "cached", "joined", "refused", "busy"))),
        ("journeys in flight, sampled: median / max",
         f"{r['in_flight']['median']:.0f} / {r['in_flight']['max']:.0f}"),
        ("exporter CPU, % of one core (idle before Prometheus)",
         f"**{e['cpu_percent_of_core']:.1f} %** ({e['idle_cpu_percent_of_core']:.2f} %)"),
        ("exporter CPU per journey (minus idle)",
         f"{e['cpu_ms_per_journey']:.1f} ms ({e['marginal_cpu_ms_per_journey']:.1f} ms)"),
        ("exporter RSS: median / max (first -> last sample)",
         f"**{e['rss_median_mib']:.1f} / {e['rss_max_mib']:.1f} MiB** "
         f"({e['rss_first_mib']:.1f} -> {e['rss_last_mib']:.1f})"),
        ("exporter threads max; open fds first -> last (max)",
         f"{e['threads_max']}; {e['fds_first']} -> {e['fds_last']} ({e['fds_max']})"),
        ("scrapes in the window (expected)", f"{r['scrapes']} ({r['expected_scrapes']:.0f})"),
        ("scrape duration: median / p90 / p99 / max",
         f"**{ms(sd['median'])} / {ms(sd['p90'])} / {ms(sd['p99'])} / {ms(sd['max'])}**"),
        ("journey duration (pizza_probe_duration_seconds): median / p90 / p99 / max",
         f"{ms(jd['median'])} / {ms(jd['p90'])} / {ms(jd['p99'])} / {ms(jd['max'])}"),
        ("up fraction", f"{r['up_fraction']:.4f}"),
        ("pizza_probe_success fraction (samples)",
         f"{r['success_fraction']:.4f} ({r['success_samples']})"),
        ("answers reused (result_age > 0)", f"{r['reused_results']}"),
        ("simulator CPU, % of one core (per journey)",
         f"{r['simulator']['cpu_percent_of_core']:.1f} % ({r['simulator']['cpu_ms_per_journey']:.1f} ms)"),
        ("Prometheus CPU, % of one core (per scrape); RSS max",
         f"{r['prometheus']['cpu_percent_of_core']:.1f} % ({r['prometheus']['cpu_ms_per_scrape']:.2f} ms); "
         f"{r['prometheus']['rss_max_mib']:.0f} MiB"),
        ("this script's CPU, % of one core", f"{r['bench_cpu_percent_of_core']:.1f} %"),
        (f"machine busy, cores of {r['machine']['cores']} (others than these processes)",
         f"{r['machine']['busy_cores']:.2f} ({r['machine']['others_cores']:.2f})"),
        ("load average 1 min: before / max during / after",
         f"{r['load_before'][0]:.2f} / {r['load_during_max']:.2f} / {r['load_after'][0]:.2f}"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    if r["failures"]:
        print("\nfailures by step/reason (series): "
              + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["failures"].items())))
    per_journey = r["exporter"]["cpu_ms_per_journey"] / 1000
    if per_journey == per_journey and per_journey > 0:
        print(f"\nheadroom at this CPU per journey: one core runs {1 / per_journey:.0f} journeys/s, "
              f"that is {r['interval'] / per_journey:.0f} targets at {r['interval']:g}s "
              f"({15 / per_journey:.0f} at 15s)")
    if r["exporter_log_tail"].strip():
        print("\nexporter log (tail):\n" + "\n".join("    " + line for line in
                                                     r["exporter_log_tail"].splitlines()))


if __name__ == "__main__":
    raise SystemExit(main())
