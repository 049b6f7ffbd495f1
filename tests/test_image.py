"""The image, built from the Dockerfile unchanged and run for real, on a private Docker engine.

tests/dockerd.py starts the engine (no bridge, no iptables) and makes a stand-in for the FROM
image, since no registry is reachable. NETWORK: every container here runs with ``--network
none`` (loopback only) or ``--network container:NAME`` (one namespace's loopback, shared), and
every request goes to 127.0.0.1 in such a namespace, through ``docker exec``; compose services
likewise share one namespace through an override file. Only the build reaches out (pip, PyPI).

`make test` installs docker.io, debootstrap and docker-compose; a missing tool is a failure
here, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings

import pytest
import yaml

from conftest import value
from dockerd import (
    REPO,
    STALE_PREFIX,
    Dockerd,
    EngineError,
    apt_mirror,
    deadline_wait,
    from_tags,
    import_standin,
    remove_stale_engines,
    standin_tarball,
)
from promstack import binary

IMAGE = "pizza-probe:latest"  # the compose file's tag
INCIDENTS = "/var/lib/pizza-probe/incidents"
VENDOR_KEY = "image-test-vendor-key"
HANDOFF = {"PIZZA_PROBE_HANDOFF_TOKEN": "image-test-handoff-token"}
FETCH = ("import sys, urllib.request\n"
         "req = urllib.request.Request(sys.argv[1], method=sys.argv[2], headers="
         "{'Authorization': 'Bearer ' + sys.argv[3]} if sys.argv[3] else {})\n"
         "with urllib.request.urlopen(req, timeout=5) as r: sys.stdout.write(r.read().decode())")


class ImageTestNote(UserWarning):
    """What the image test did not run here, or how long it took: shown in pytest's summary."""


class Image:
    """The built image on the private engine, and the containers a test runs from it."""

    def __init__(self, engine: Dockerd, timings: dict[str, float]) -> None:
        self.engine = engine
        self.timings = timings

    def docker(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.engine.run(*args, **kwargs)

    def start(self, name: str, *command: str, network: str = "none", options=(),
              env: dict[str, str] | None = None, health_interval: str | None = "1s") -> str:
        """``docker run -d`` the image; the health check is the image's own, only more often."""
        args = ["run", "-d", "--name", name, "--network", network, *options]
        if health_interval:
            args += ["--health-interval", health_interval]
        for key, val in (env or {}).items():
            args += ["-e", f"{key}={val}"]
        self.docker(*args, IMAGE, *command)
        return name

    def inspect(self, name: str) -> dict:
        return json.loads(self.docker("inspect", name).stdout)[0]

    def logs(self, name: str) -> str:
        out = self.docker("logs", name, check=False)
        return out.stdout + out.stderr

    def wait_healthy(self, name: str, timeout: float = 45) -> dict:
        def healthy():
            state = self.inspect(name)["State"]
            if state["Status"] == "exited":
                raise EngineError(f"{name} exited {state['ExitCode']}: {self.logs(name)[-2000:]}")
            return state if state.get("Health", {}).get("Status") == "healthy" else None

        try:
            return deadline_wait(healthy, timeout=timeout, interval=0.25, what=f"{name} healthy")
        except EngineError as exc:
            health = self.inspect(name)["State"].get("Health", {})
            pytest.fail(f"{exc}; health log: {health.get('Log', [])[-3:]}; "
                        f"logs: {self.logs(name)[-1500:]}")

    def get(self, container: str, url: str, method: str = "GET", token: str = "") -> str:
        """An HTTP request from inside ``container``'s network namespace (its loopback)."""
        return self.docker("exec", container, "python3", "-c", FETCH, url, method, token,
                           timeout=30).stdout

    def poll(self, check, *, timeout: float, what: str, logs_of: str | None = None):
        try:
            return deadline_wait(check, timeout=timeout, interval=0.5, what=what)
        except EngineError as exc:
            pytest.fail(str(exc) + (f"; {logs_of} logs: {self.logs(logs_of)[-1500:]}"
                                    if logs_of else ""))


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    """A private engine with the stand-in base and the image built from the Dockerfile."""
    workdir = tmp_path_factory.mktemp("image")
    remove_stale_engines("/tmp")
    # short: containerd's socket paths live below the exec root
    engine = Dockerd(tempfile.mkdtemp(prefix=STALE_PREFIX, dir="/tmp"))
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        engine.start()
        timings["dockerd start"] = time.monotonic() - started
        with open(workdir / "standin.log", "w") as log:
            started = time.monotonic()
            tarball, built = standin_tarball(apt_mirror(), log)
            timings["base rootfs (debootstrap)" if built else "base rootfs (cached)"] = \
                time.monotonic() - started
        started = time.monotonic()
        import_standin(engine, tarball, from_tags(os.path.join(REPO, "Dockerfile")), str(workdir))
        timings["base import"] = time.monotonic() - started
        started = time.monotonic()
        engine.run("build", "--network", "host", "-t", IMAGE, REPO, timeout=600)
        timings["docker build"] = time.monotonic() - started
    except EngineError as exc:
        tail = engine.log_tail()  # before stop() deletes it
        engine.stop()
        pytest.fail(f"image test setup: {exc}; dockerd log: {tail}")
    except BaseException:
        engine.stop()
        raise
    warnings.warn(ImageTestNote("image test setup: " + ", ".join(
        f"{name} {seconds:.1f}s" for name, seconds in timings.items())), stacklevel=2)
    yield Image(engine, timings)
    left = engine.stop()
    assert not [m for m in left if "/exec/" not in m and "/data/" not in m], left


# --- what is in the image --------------------------------------------------------------------

def test_the_image_is_slim_and_runs_as_10001(image):
    config = image.inspect(IMAGE)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"] == ["CMD", "pizza-probe", "healthcheck"]
    assert config["Entrypoint"] == ["pizza-probe"] and config["Cmd"] == ["serve"]
    script = ("id -u; id -g; stat -c %u:%g " + INCIDENTS + "; "
              "ls -d /app /src /wheels /tmp/wheels 2>/dev/null; "
              "find / -xdev \\( -name '*.egg-info' -o -name setup.cfg -o -name build -path '*/app/*' "
              "\\) -print 2>/dev/null; "
              "python3 -c 'import exporter; print(exporter.__file__)'")
    out = image.docker("run", "--rm", "--network", "none", "--entrypoint", "sh", IMAGE, "-c",
                       script).stdout.split()
    assert out[:3] == ["10001", "10001", "10001:10001"], out
    assert len(out) == 4 and re.fullmatch(r".*/site-packages/exporter/__init__\.py", out[3]), out
    # the same ids as the Kubernetes manifest's pod security context
    deployment = next(doc for doc in yaml.safe_load_all(
        open(os.path.join(REPO, "deploy", "kubernetes", "deployment.yaml"))))
    context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001)


# --- the exporter and the simulator in one network namespace ---------------------------------

def start_shop(image: Image, prefix: str) -> str:
    """A simulator in a namespace of its own (loopback only); others join it."""
    return image.start(f"{prefix}-sim", "simulate", "--listen", "127.0.0.1:3000",
                       "--factory-listen", "127.0.0.1:3001", "--throttle-delay", "1s",
                       env={"PIZZA_SIM_VENDOR_KEY": VENDOR_KEY})


def start_exporter(image: Image, name: str, shop: str, listen: str = "127.0.0.1:9816",
                   options=()) -> str:
    return image.start(name, "serve", "--listen", listen, "--interval", "1s",
                       network=f"container:{shop}", options=options,
                       env={"PIZZA_SERVICE_URL": "http://127.0.0.1:3000",
                            "PIZZA_FACTORY_URL": "http://127.0.0.1:3001", **HANDOFF})


def orders(image: Image, container: str, url: str, result: str) -> float:
    return value(image.get(container, url), "pizza_probe_orders_total", result=result) or 0


@pytest.fixture(scope="module")
def shop(image):
    sim = start_shop(image, "shop")
    # simulate's own check (its service's / on 127.0.0.1:3000) passes before the exporter's
    # first journey starts, so that journey cannot fail on a shop not yet listening
    image.wait_healthy(sim)
    exporter = start_exporter(image, "shop-exporter", sim)
    yield sim, exporter
    image.docker("rm", "-f", sim, exporter, check=False)


def test_exporter_counts_orders_against_the_simulator_and_is_healthy(image, shop):
    sim, exporter = shop
    image.wait_healthy(exporter)
    image.poll(lambda: orders(image, exporter, "http://127.0.0.1:9816/metrics", "success") >= 2,
               timeout=30, what="two successful orders in /metrics")
    assert orders(image, exporter, "http://127.0.0.1:9816/metrics", "failure") == 0
    assert "msg=listening address=127.0.0.1:9816" in image.logs(exporter)


def test_the_sidecar_alone_is_healthy_on_its_own_port(image):
    """The image's own health check (only its interval shortened), no exporter anywhere: it
    checks :9817, where the sidecar listens; the old fixed :9816 would fail."""
    sidecar = image.start("lonely-sidecar", "sidecar")
    try:
        state = image.wait_healthy(sidecar)
        assert all(entry["ExitCode"] == 0 for entry in state["Health"]["Log"][-1:])
        old = image.docker("exec", sidecar, "pizza-probe", "healthcheck",
                           "http://127.0.0.1:9816/healthz", check=False)
        assert old.returncode == 1 and old.stderr.startswith("unhealthy:")
        assert image.docker("exec", sidecar, "pizza-probe", "healthcheck",
                            check=False).returncode == 0
    finally:
        image.docker("rm", "-f", sidecar, check=False)


def test_the_sidecar_records_an_incident_on_a_named_volume(image):
    volume = "image-test-incidents"
    image.docker("volume", "create", volume)
    sim = start_shop(image, "incident")
    names = [sim]
    try:
        names.append(start_exporter(image, "incident-exporter", sim))
        names.append(image.start(
            "incident-sidecar", "sidecar", "--listen", "127.0.0.1:9817",
            "--exporter-url", "http://127.0.0.1:9816", "--incident-dir", INCIDENTS,
            "--cooldown", "1s", network=f"container:{sim}",
            options=["-v", f"{volume}:{INCIDENTS}"],
            env={"PIZZA_SERVICE_URL": "http://127.0.0.1:3000",
                 "PIZZA_FACTORY_URL": "http://127.0.0.1:3001", **HANDOFF}))
        image.wait_healthy("incident-sidecar")
        image.poll(lambda: orders(image, sim, "http://127.0.0.1:9816/metrics", "success") >= 1,
                   timeout=30, what="a first good order")
        # break the factory as a user does, through its vendor endpoint
        image.get(sim, "http://127.0.0.1:3001/api/vendor/chaos/fail", "PUT", VENDOR_KEY)
        folder = image.docker("volume", "inspect", "-f", "{{.Mountpoint}}", volume).stdout.strip()

        def resolved():
            records = [json.load(open(os.path.join(folder, name)))
                       for name in os.listdir(folder) if name.endswith(".json")]
            return [r for r in records if r["status"] == "resolved"]

        (record,) = image.poll(resolved, timeout=60, what="a resolved incident record on the volume",
                               logs_of="incident-sidecar")
        assert record["chaos_mode"] == "fail" and record["detected_by"] == "probe"
        for name in os.listdir(folder):
            assert os.stat(os.path.join(folder, name)).st_uid == 10001, name
        assert os.path.exists(os.path.join(folder, f"{record['id']}.md"))
        logs = image.logs("incident-sidecar")
        assert "cannot write" not in logs and "incident resolved" in logs, logs[-2000:]
    finally:
        image.docker("rm", "-f", *names, check=False)
        image.docker("volume", "rm", volume, check=False)


def test_exporter_read_only_without_capabilities_in_128m_and_stops_at_once(image, shop):
    sim, _ = shop
    exporter = start_exporter(image, "hardened-exporter", sim, listen="127.0.0.1:9826", options=[
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--memory", "128m"])
    try:
        image.wait_healthy(exporter)  # its check found :9826 from the command line alone
        host = image.inspect(exporter)["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["Memory"] == 128 * 1024 * 1024
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
        image.poll(lambda: orders(image, sim, "http://127.0.0.1:9826/metrics", "success") >= 1,
                   timeout=30, what="a good order from the hardened exporter")
        started = time.monotonic()
        image.docker("stop", exporter, timeout=30)
        took = time.monotonic() - started
        state = image.inspect(exporter)["State"]
        assert took < 3 and state["ExitCode"] == 0, (took, state, image.logs(exporter)[-1500:])
        assert "msg=stopping" in image.logs(exporter)
    finally:
        image.docker("rm", "-f", exporter, check=False)


# --- the compose stack -----------------------------------------------------------------------

# Prometheus, Alertmanager and Grafana come from registries this machine cannot reach, so the
# compose test starts only the services built from this repository: pizza-probe,
# pizza-probe-sidecar and the demo profile's simulator.
STARTED = ("simulator", "pizza-probe", "pizza-probe-sidecar")


def compose_copy(tmp_path) -> str:
    """deploy/compose in a scratch directory, as a user sets it up (.env from the example).

    Docker refuses published ports on a container sharing another's network namespace, and a
    compose v1 override can add ports but not remove them, so the copy drops the `ports` of the
    services started here; everything else is the shipped file. The override then puts the
    three in one namespace with only loopback: no bridge network is created."""
    folder = tmp_path / "deploy" / "compose"
    shutil.copytree(os.path.join(REPO, "deploy", "compose"), folder,
                    ignore=shutil.ignore_patterns(".env"))
    shutil.copy(folder / ".env.example", folder / ".env")
    stack = yaml.safe_load((folder / "docker-compose.yml").read_text())
    for name in STARTED:
        stack["services"][name].pop("ports", None)
    (folder / "docker-compose.yml").write_text(yaml.safe_dump(stack, sort_keys=False))
    hosts = [f"{name}:127.0.0.1" for name in STARTED]
    override = {"services": {
        "simulator": {"network_mode": "none", "extra_hosts": hosts,
                      "environment": {"PIZZA_SIM_VENDOR_KEY": VENDOR_KEY},
                      "healthcheck": {"interval": "1s"}},
        "pizza-probe": {"network_mode": "service:simulator", "healthcheck": {"interval": "1s"},
                        "environment": {"PIZZA_PROBE_INTERVAL": "1s"}},
        "pizza-probe-sidecar": {"network_mode": "service:simulator",
                                "healthcheck": {"interval": "1s"}},
    }}
    (folder / "loopback.override.yml").write_text(yaml.safe_dump(override))
    return str(folder)


def test_compose_demo_profile_runs_the_stack_it_can_build(image, tmp_path):
    warnings.warn(ImageTestNote(
        "compose: started pizza-probe, pizza-probe-sidecar and simulator only; prometheus, "
        "alertmanager and grafana need registry images this machine cannot pull"), stacklevel=2)
    folder = compose_copy(tmp_path)
    project = "image-test"
    base = [binary("docker-compose"), "-p", project, "-f", "docker-compose.yml",
            "-f", "loopback.override.yml", "--profile", "demo"]

    def compose(*args, check=True, timeout=180):
        out = subprocess.run([*base, *args], cwd=folder, env=image.engine.env,
                             capture_output=True, text=True, timeout=timeout)
        if check:
            assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out

    try:
        compose("up", "-d", "--no-build", *STARTED)
        ids = compose("ps", "-q").stdout.split()
        names = {image.inspect(i)["Config"]["Labels"]["com.docker.compose.service"]:
                 image.inspect(i)["Name"].lstrip("/") for i in ids}
        assert set(names) == set(STARTED), names
        for service in STARTED:
            image.wait_healthy(names[service])
        # the demo profile's defaults point the exporter at the simulator
        exporter = names["pizza-probe"]
        env = image.inspect(exporter)["Config"]["Env"]
        assert "PIZZA_SERVICE_URL=http://simulator:3000" in env
        image.poll(lambda: orders(image, exporter, "http://127.0.0.1:9816/metrics", "success") >= 1,
                   timeout=30, what="a good order on the demo stack")
        # the shipped volume takes the incident the sidecar opens once the factory breaks
        image.get(exporter, "http://127.0.0.1:3001/api/vendor/chaos/fail", "PUT", VENDOR_KEY)
        folder_on_host = image.docker("volume", "inspect", "-f", "{{.Mountpoint}}",
                                      f"{project}_incidents").stdout.strip()
        record = image.poll(lambda: [n for n in os.listdir(folder_on_host) if n.endswith(".json")],
                            timeout=45, what="an incident record on the compose volume",
                            logs_of=names["pizza-probe-sidecar"])
        assert os.stat(os.path.join(folder_on_host, record[0])).st_uid == 10001
        logs = image.logs(names["pizza-probe-sidecar"])
        assert "incident opened" in logs and "cannot write" not in logs, logs[-2000:]
    finally:
        compose("down", "-v", "--timeout", "3", check=False)
    # and no network was made for it: no bridge, nothing but the engine's host and none
    networks = image.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(networks) == ["host", "none"], networks


def test_an_interrupted_runs_engine_directory_is_unmounted_and_removed(tmp_path):
    """What a killed run leaves (its dockerd gone, a mount inside) goes at the next start;
    a directory whose dockerd is alive is left alone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tempfile.mkdtemp(prefix=STALE_PREFIX, dir="/tmp")
    live = tempfile.mkdtemp(prefix=STALE_PREFIX, dir="/tmp")
    try:
        open(os.path.join(stale, "docker.pid"), "w").write(str(gone.pid))
        open(os.path.join(live, "docker.pid"), "w").write(str(os.getpid()))
        os.makedirs(os.path.join(stale, "exec", "netns"))
        point = os.path.join(stale, "exec", "netns", "default")
        open(point, "w").close()
        subprocess.run(["mount", "--bind", "/proc/self/ns/net", point], check=True)
        removed = remove_stale_engines("/tmp")
        assert stale in removed and live not in removed
        assert not os.path.exists(stale) and os.path.exists(live)
        assert point not in open("/proc/self/mountinfo").read()
    finally:
        for base in (stale, live):
            if os.path.exists(base):
                subprocess.run(["umount", "-l", os.path.join(base, "exec", "netns", "default")],
                               capture_output=True)
                shutil.rmtree(base, ignore_errors=True)
