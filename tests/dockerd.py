"""A private Docker engine for tests/test_image.py, and a stand-in for the Dockerfile's FROM image.

The engine has its own socket, data root, exec root and pid file, and touches no host network:
``--bridge=none --iptables=false --ip-forward=false --ip6tables=false`` (no bridge, no rule, no
sysctl). Its containers run with ``--network none`` (a namespace with loopback only) or
``--network container:NAME`` (sharing one), so every test request goes to 127.0.0.1 inside
such a namespace. Only ``docker build --network host`` reaches out, for pip and PyPI.

No image registry is reachable here, so the ``FROM`` image is a stand-in: Debian bookworm by
debootstrap from the mirror apt already uses, with python3, python3-venv and a venv first on
PATH (``python`` and ``pip`` as in the official image), the host's CA bundle (pip works behind
a TLS-inspecting proxy), imported under the ``FROM`` tag. Its root file system is cached as a
tarball in ``.cache/image/`` (or ``$PIZZA_IMAGE_CACHE``) between runs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("PIZZA_IMAGE_CACHE") or os.path.join(REPO, ".cache", "image")
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
VENV = "/opt/venv"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Changing the recipe below changes this key, so a stale cached tarball is never used.
RECIPE = f"{SUITE} minbase {','.join(PACKAGES)} venv={VENV} v1"


SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def tool_env() -> dict[str, str]:
    """Our environment with the sbin directories on PATH: dockerd, debootstrap, chroot and
    runc live there, and a CI environment's PATH may lack them."""
    path = os.environ.get("PATH", "")
    return {**os.environ, "PATH": ":".join(p for p in [path, SBIN_PATH] if p)}


def sbin(name: str) -> str:
    found = shutil.which(name, path=tool_env()["PATH"])
    if not found:
        raise EngineError(f"no {name}: `make test` installs it (Debian packages docker.io, "
                          "debootstrap)")
    return found


class EngineError(Exception):
    """Something the engine or a build step refused; the message says what, in one place."""


def deadline_wait(check, *, timeout: float, interval: float = 0.2, what: str):
    """Call ``check`` until it returns something truthy; EngineError once ``timeout`` passes."""
    end = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 (not up yet: polled again until the deadline)
            last = exc
        if time.monotonic() >= end:
            raise EngineError(f"timed out after {timeout:.0f}s waiting for {what}"
                              + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest first (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_all(path: str) -> list[str]:
    """Unmount what is mounted below ``path`` (what debootstrap or the engine left)."""
    left = mounts_under(path)
    for point in left:
        if subprocess.run(["umount", point], capture_output=True, env=tool_env()).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True, env=tool_env())
    return left


STALE_PREFIX = "ppd-"


def remove_stale_engines(parent: str = "/tmp") -> list[str]:
    """The directories of engines that an interrupted run left (their dockerd is gone): unmount
    and delete them. An engine whose dockerd still runs, another run's perhaps, is left alone."""
    removed = []
    for base in glob.glob(os.path.join(parent, STALE_PREFIX + "*"))[:100]:
        try:
            pid = int(open(os.path.join(base, "docker.pid")).read().strip())
        except (OSError, ValueError):
            pid = None
        started = os.path.getmtime(base) if os.path.exists(base) else 0
        if pid is None and time.time() - started < 600:
            continue  # starting now, perhaps: not ours to judge yet
        if pid is not None and _alive(pid):
            continue
        unmount_all(base)
        shutil.rmtree(base, ignore_errors=True)
        removed.append(base)
    return removed


def docker_client() -> str:
    """Debian's docker.io client, the engine's own version; else whatever is on PATH."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise EngineError("no docker client: `make test` installs Debian's docker.io")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class Dockerd:
    """``dockerd`` in a directory of its own; ``stop()`` ends it by pid and unmounts its mounts."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.socket = os.path.join(base, "docker.sock")
        self.data_root = os.path.join(base, "data")
        self.exec_root = os.path.join(base, "exec")
        self.pidfile = os.path.join(base, "docker.pid")
        self.log_path = os.path.join(base, "dockerd.log")
        self.client = docker_client()
        self.proc: subprocess.Popen | None = None
        config = os.path.join(base, "client-config")
        os.makedirs(config, exist_ok=True)
        self.env = {
            "PATH": tool_env()["PATH"],
            "HOME": base,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": config,  # not the user's ~/.docker (credential helpers, contexts)
            "DOCKER_BUILDKIT": "0",  # the classic builder, part of the engine
            "COMPOSE_DOCKER_CLI_BUILD": "0",
        }

    def start(self, timeout: float = 60) -> Dockerd:
        dockerd = sbin("dockerd")
        daemon_json = os.path.join(self.base, "daemon.json")
        with open(daemon_json, "w") as handle:
            json.dump({}, handle)  # not /etc/docker/daemon.json
        args = [dockerd, "--config-file", daemon_json, "-H", f"unix://{self.socket}",
                "--data-root", self.data_root, "--exec-root", self.exec_root,
                "--pidfile", self.pidfile,
                "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip6tables=false",
                "--ip-masq=false", "--userland-proxy=false",
                "--shutdown-timeout", "3", "--log-level", "warn"]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=tool_env())

        def ready():
            if self.proc.poll() is not None:
                raise EngineError(f"dockerd exited with {self.proc.returncode}: {self.log_tail()}")
            return os.path.exists(self.socket) and self.run("version", timeout=10,
                                                            check=False).returncode == 0

        deadline_wait(ready, timeout=timeout, interval=0.2, what="dockerd to answer")
        return self

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path) as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

    def run(self, *args: str, timeout: float = 120, check: bool = True,
            input: str | bytes | None = None, text: bool = True) -> subprocess.CompletedProcess:
        """``docker ARGS`` against this engine; EngineError with its output if it fails."""
        out = subprocess.run([self.client, *args], capture_output=True, text=text, input=input,
                             env=self.env, timeout=timeout)
        if check and out.returncode != 0:
            raise EngineError(f"docker {' '.join(args[:3])} ... exited {out.returncode}: "
                              f"{out.stderr[-3000:]}{out.stdout[-2000:]}")
        return out

    def stop(self, timeout: float = 30) -> list[str]:
        """Remove the containers, end dockerd (and the containerd it started) by pid, unmount
        what is left below the base directory and delete it. Returns what had to be unmounted."""
        if self.proc and self.proc.poll() is None:
            ids = self.run("ps", "-aq", check=False, timeout=30).stdout.split()
            if ids:
                self.run("rm", "-f", "-v", *ids, check=False, timeout=60)
        containerd = []
        for path in glob.glob(os.path.join(self.exec_root, "containerd", "*.pid")):
            try:
                containerd.append(int(open(path).read().strip()))
            except (OSError, ValueError):
                pass
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in containerd:  # dockerd ends it; make sure, by its pid
            end = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < end:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if getattr(self, "log", None):
            self.log.close()
        left = unmount_all(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        return left


# --- the stand-in for the FROM image ---------------------------------------------------------

def apt_mirror(sources_dir: str = "/etc/apt") -> str:
    """The Debian mirror apt uses for the main archive (not the security one)."""
    entries: list[tuple[str, list[str]]] = []
    one_line = [os.path.join(sources_dir, "sources.list"),
                *sorted(glob.glob(os.path.join(sources_dir, "sources.list.d", "*.list")))]
    for path in one_line:
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                entries.append((words[1], [words[2]]))
    for path in sorted(glob.glob(os.path.join(sources_dir, "sources.list.d", "*.sources"))):
        try:
            text = open(path).read()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                for uri in fields.get("URIs", "").split():
                    entries.append((uri, fields.get("Suites", "").split()))
    for uri, suites in entries:
        if any(suite.split("-")[0] == SUITE and "security" not in suite for suite in suites) \
                and "security" not in uri:
            return uri.rstrip("/")
    raise EngineError(f"no Debian {SUITE} mirror in {sources_dir}/sources.list*: "
                      "the image test builds its base image from it")


def standin_tarball(mirror: str, log) -> tuple[str, bool]:
    """(path, built now) of the stand-in's root file system tarball, built once and cached."""
    key = hashlib.sha256(f"{RECIPE} {mirror}".encode()).hexdigest()[:12]
    path = os.path.join(CACHE, f"debian-{SUITE}-python3-{key}.tar")
    if os.path.exists(path):
        return path, False
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="standin-", dir=CACHE)
    root = os.path.join(work, "root")
    try:
        steps = [
            [sbin("debootstrap"), "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             root, mirror],
            [sbin("chroot"), root, "/usr/bin/python3", "-m", "venv", VENV],
        ]
        for args in steps:
            out = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, timeout=600,
                                 stdin=subprocess.DEVNULL, env=tool_env())
            if out.returncode != 0:
                raise EngineError(f"{args[0]} exited {out.returncode} (see {log.name})")
        for leftover in glob.glob(os.path.join(root, "var/cache/apt/archives/*.deb")) + \
                glob.glob(os.path.join(root, "var/lib/apt/lists/*_*")):
            os.remove(leftover)
        with open(os.path.join(root, "etc/pip.conf"), "w") as handle:
            handle.write(f"[global]\ncert = {CA_BUNDLE}\n")  # the bundle is added at import
        partial = os.path.join(work, "rootfs.tar")
        out = subprocess.run(["tar", "--numeric-owner", "-C", root, "-cf", partial, "."],
                             stdout=log, stderr=subprocess.STDOUT, timeout=300)
        if out.returncode != 0:
            raise EngineError(f"tar exited {out.returncode} (see {log.name})")
        os.replace(partial, path)  # whole or not at all, even with two runs at once
        return path, True
    finally:
        unmount_all(work)
        shutil.rmtree(work, ignore_errors=True)


def from_tags(dockerfile: str) -> list[str]:
    """The images a Dockerfile's FROM lines name (not its own stage names)."""
    stages, tags = set(), []
    for match in re.finditer(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", open(dockerfile).read(),
                             re.M | re.I):
        image, stage = match.group(1), match.group(2)
        if image not in stages and image not in tags:
            tags.append(image)
        if stage:
            stages.add(stage)
    return tags


def import_standin(engine: Dockerd, tarball: str, tags: list[str], workdir: str) -> None:
    """``docker import`` the tarball, add the host's CA bundle, tag it as each FROM image."""
    raw = "pizza-probe-test/debian-python:" + os.path.basename(tarball).rsplit(".", 1)[0][-12:]
    engine.run("import",
               "--change", f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                           "/usr/bin:/sbin:/bin",
               "--change", "ENV LANG=C.UTF-8",
               "--change", 'CMD ["python3"]',
               tarball, raw, timeout=300)
    context = os.path.join(workdir, "standin")
    os.makedirs(context, exist_ok=True)
    bundle = os.environ.get("SSL_CERT_FILE") or CA_BUNDLE
    shutil.copy(bundle if os.path.exists(bundle) else CA_BUNDLE,
                os.path.join(context, "ca-certificates.crt"))
    with open(os.path.join(context, "Dockerfile"), "w") as handle:
        handle.write(f"FROM {raw}\nCOPY ca-certificates.crt {CA_BUNDLE}\n")
    tag_args = [arg for tag in tags for arg in ("-t", tag)]
    engine.run("build", "--network", "none", "-q", *tag_args, context, timeout=300)
