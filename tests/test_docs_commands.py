"""Every shell block marked runnable in README.md and docs/*.md runs as written.

A block is runnable when its fence's info string is ``sh runnable`` (docs/development.md says
so). Each one runs with ``bash -e -o pipefail`` in a network namespace of its own with only
loopback up: the documented fixed ports (3000, 9816, ...) cannot collide with another test, and
a request that would leave loopback fails the block instead of reaching the internet. The
background processes a block starts end with it (a PID namespace of its own).
"""

from __future__ import annotations

import glob
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass

import pytest

from processes import CLEAN_ENV

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE = 90.0  # seconds for one block, waits included
COPIED = ("alerts", "deploy", "dashboards")  # what a block may name by a relative path
FENCE = re.compile(r"^(`{3,}|~{3,})\s*(.*)$")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    info: str
    text: str

    @property
    def runnable(self) -> bool:
        words = self.info.split()
        return len(words) >= 2 and words[0] in ("sh", "bash") and "runnable" in words[1:]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def doc_files() -> list[str]:
    return [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]


def fenced_blocks(path: str) -> list[Block]:
    """The fenced code blocks of a Markdown file, as CommonMark reads them: a block closes at a
    fence of the same character at least as long, so a ````-fence can show a ```-fence."""
    blocks: list[Block] = []
    opening: tuple[str, int, str] | None = None
    body: list[str] = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            match = FENCE.match(line.strip()) if line.startswith(("`", "~")) else None
            if opening is None:
                if match:
                    opening, body = (match.group(1), number, match.group(2)), []
                continue
            fence, start, info = opening
            if match and match.group(2) == "" and match.group(1)[0] == fence[0] \
                    and len(match.group(1)) >= len(fence):
                blocks.append(Block(os.path.relpath(path, REPO), start, info.strip(), "".join(body)))
                opening = None
            else:
                body.append(line)
    assert opening is None, f"{path}:{opening[1]}: a fence that never closes"
    return blocks


def runnable_blocks() -> list[Block]:
    return [block for path in doc_files() for block in fenced_blocks(path) if block.runnable]


def venv_bin() -> str:
    scripts = sysconfig.get_path("scripts")
    assert os.path.exists(os.path.join(scripts, "pizza-probe")), \
        f"no pizza-probe in {scripts}: run the tests through 'make test'"
    return scripts


# Python as the namespace's first process: bring loopback up, then become the block's shell.
LOOPBACK_UP = """
import fcntl, os, socket, struct, sys
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh", b"lo", 0)))[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
os.execvp(sys.argv[1], sys.argv[1:])
"""


def isolated() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("runs each block in a network namespace of its own: needs root and unshare "
                    "(make test runs as root)")
    assert shutil.which("curl"), "the docs' examples use curl: apt-get install curl"


def run_block(block: Block, workdir) -> subprocess.CompletedProcess:
    for name in COPIED:
        shutil.copytree(os.path.join(REPO, name), workdir / name)
    script = workdir / "block.sh"
    script.write_text(block.text)
    env = {k: v for k, v in CLEAN_ENV.items() if "proxy" not in k.lower()}
    env.update(PATH=f"{venv_bin()}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
               HOME=str(workdir), TMPDIR=str(workdir))
    command = ["unshare", "--net", "--pid", "--fork", "--kill-child",
               sys.executable, "-c", LOOPBACK_UP, "bash", "-e", "-o", "pipefail", str(script)]
    try:
        return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=DEADLINE, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.where}: not done within {DEADLINE:.0f}s\n{exc.stdout}\n{exc.stderr}")


BLOCKS = runnable_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_a_runnable_block_runs_as_written(block, tmp_path):
    isolated()
    out = run_block(block, tmp_path)
    assert out.returncode == 0, (f"{block.where} exited {out.returncode}:\n{block.text}\n"
                                 f"--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}")


def test_the_runner_fails_a_block_that_fails_or_leaves_loopback(tmp_path):
    """The runner is honest: a failing command in the middle fails the block, and so does a
    request to anything but loopback."""
    isolated()
    middle = Block("x.md", 1, "sh runnable", "false\ntrue\n")
    assert run_block(middle, tmp_path / "a").returncode != 0
    outside = Block("x.md", 1, "sh runnable",  # TEST-NET-1: never routed, even without the namespace
                    "curl -s -o /dev/null --max-time 5 http://192.0.2.1/\n")
    assert run_block(outside, tmp_path / "b").returncode != 0
    inside = Block("x.md", 1, "sh runnable", "pizza-probe simulate &\n"
                   "curl -s --retry 10 --retry-delay 1 --retry-connrefused -o /dev/null "
                   "http://127.0.0.1:3000/\n")
    assert run_block(inside, tmp_path / "c").returncode == 0


def test_the_docs_mark_their_simulator_examples_runnable():
    where = {block.path for block in BLOCKS}
    assert {"README.md", "docs/fleet.md", "docs/metrics.md", "docs/configuration.md",
            "docs/sidecar.md", "docs/journey.md"} <= where, where
    readme = [block for block in BLOCKS if block.path == "README.md"]
    quick_start = readme[0].text.strip().splitlines()
    assert len(quick_start) <= 5, quick_start  # the 5-line quick start comes first
    assert any("--target" in block.text and "/probe?target=" in block.text for block in readme), \
        "the README's fleet example runs against the simulator"


def test_a_fence_can_show_a_fence(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("````markdown\n```sh runnable\nfalse\n```\n````\n\n```sh runnable\ntrue\n```\n")
    blocks = fenced_blocks(str(page))
    assert [(b.info, b.runnable) for b in blocks] == [("markdown", False), ("sh runnable", True)]
    assert blocks[1].text == "true\n"


# --- the quick start's promise: a journey against `simulate` never leaves loopback ---------


class Trap(http.server.ThreadingHTTPServer):
    """A proxy that records what reaches it and answers 502: set as HTTP(S)_PROXY, it sees
    every request that is not for loopback (the probe never proxies loopback)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        trap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                trap.seen.append(self.requestline)
                self.send_error(502)

            do_GET = do_POST = do_PUT = do_DELETE = do_CONNECT = _refuse

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_once_against_a_simulate_process_verifies_at_the_simulators_factory(processes):
    """What a newcomer types: `simulate`, then `once --service-url` without --factory-url. The
    pizza is verified at the simulator's own factory, named by its GET /api/docs, and no request
    goes anywhere but loopback (a trap proxy would see it)."""
    sim = processes.start("simulate", "--factory-listen", "127.0.0.1:0")
    factory = re.search(r"factory_address=(127\.0\.0\.1:\d+)", sim.logs()).group(1)
    trap = Trap()
    try:
        env = {k: v for k, v in CLEAN_ENV.items() if "proxy" not in k.lower()}
        env.update(HTTP_PROXY=trap.url, HTTPS_PROXY=trap.url, ALL_PROXY=trap.url)
        out = subprocess.run([sys.executable, "-m", "exporter", "once", "--service-url", sim.url,
                              "--json"], capture_output=True, text=True, timeout=60, env=env,
                             stdin=subprocess.DEVNULL)
    finally:
        trap.shutdown()
        trap.server_close()
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["success"] is True
    assert (result["factory_url"], result["factory_source"]) == (f"http://{factory}", "service")
    assert {step["step"]: step["ok"] for step in result["steps"]}["verify"] is True
    assert trap.seen == [], trap.seen


# --- the blocks that cannot run here (a real deployment) still parse and use real flags --------


def shell_blocks() -> list[Block]:
    return [block for path in doc_files() for block in fenced_blocks(path)
            if block.info.split()[:1] in (["sh"], ["bash"])]


def pizza_probe_calls(text: str, commands=("simulate", "serve", "sidecar", "once", "demo",
                                           "healthcheck")) -> list[list[str]]:
    """The arguments of each ``pizza-probe`` command in a shell block: in command position
    (first, or after ``VAR=value`` assignments, ``|``, ``&&``, ``||``, ``;`` or ``&``), or as
    the image of a ``docker run`` followed by one of ``commands`` (the image runs pizza-probe)."""
    import shlex

    calls = []
    for line in text.replace("\\\n", " ").splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue  # a heredoc body or the like: bash -n judges the block
        if words[:2] == ["docker", "run"]:
            calls += [words[i + 1:] for i in range(2, len(words) - 1)
                      if re.fullmatch(r"pizza-probe(:[\w.-]+)?", words[i]) and words[i + 1] in commands]
            continue
        command_position = True
        for index, word in enumerate(words):
            if word in ("|", "&&", "||", ";", "&"):
                command_position = True
            elif command_position and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
                continue
            elif command_position:
                if word in ("pizza-probe", ".venv/bin/pizza-probe"):
                    calls.append(words[index + 1:])
                command_position = False
    return calls


def test_every_shell_block_parses_and_names_real_commands_and_flags():
    from exporter.cli import cli

    blocks = shell_blocks()
    assert len(blocks) > len(BLOCKS), "the deployment examples are shell blocks too"
    wrong = []
    for block in blocks:
        syntax = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
        if syntax.returncode != 0:
            wrong.append(f"{block.where}: {syntax.stderr.strip()}")
        for args in pizza_probe_calls(block.text, tuple(cli.commands)):
            command = cli.commands.get(args[0]) if args else None
            if command is None:
                wrong.append(f"{block.where}: no command pizza-probe {' '.join(args[:1])}")
                continue
            known = {opt for param in command.params for opt in getattr(param, "opts", [])}
            for word in args[1:]:
                flag = word.split("=", 1)[0]
                if flag.startswith("--") and flag not in known:
                    wrong.append(f"{block.where}: pizza-probe {args[0]} has no {flag}")
                if word in ("|", "&", "&&", "||", ";"):
                    break
    assert not wrong, "\n".join(wrong)


def test_pizza_probe_calls_are_found_in_command_position_only():
    text = ("A=1 pizza-probe once --json | grep ok && pizza-probe serve \\\n  --interval 5s\n"
            "docker build -t pizza-probe .\n"
            "docker run -d --name pizza-probe -v x:/y pizza-probe:1 sidecar --x  # the image's\n"
            "curl -s http://h/pizza-probe\n")
    calls = pizza_probe_calls(text)
    assert [call[0] for call in calls] == ["once", "serve", "sidecar"]
    assert calls[1] == ["serve", "--interval", "5s"]
