"""The package as a user gets it: `python -m build` makes a wheel that runs in a fresh venv with
only the hashed requirements.txt beside it, and the editable install (`make install`) builds
without a warning.

Both build from a clean copy of what the sdist holds, never from the work tree (no egg-info or
build/ left there, nothing of tests/ can leak in). The build backend is the pinned setuptools
of the test venv (requirements-test.txt), so nothing unpinned is fetched to build. The fresh
venv installs requirements.txt from the package registry with --require-hashes, as the image
does (pip's cache makes a second run fast)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile

import pytest

from conftest import start_simulator
from promstack import REPO, copy_from_repo

SOURCE = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "exporter")
WARNING = re.compile(r"^\S+:\d+: \w+(Warning|InformationOnly)\b", re.M)  # warnings.warn's first line


def run(*args, cwd, timeout=120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def clean_copy(into) -> str:
    into.mkdir()
    copy_from_repo(SOURCE, into)
    return str(into)


def version() -> str:
    text = open(os.path.join(REPO, "exporter", "__init__.py")).read()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def test_editable_build_warns_nothing(tmp_path):
    """What `pip install -e .` runs, with every warning shown: pip relays a backend warning as
    a multi-line block at each `make install`. setuptools warned when it could not tell the
    import root (an import hook instead of a plain .pth) and would for any deprecated key."""
    src = clean_copy(tmp_path / "src")
    (tmp_path / "out").mkdir()
    out = run(sys.executable, "-W", "always", "-c",
              "import sys; from setuptools import build_meta; print(build_meta.build_editable(sys.argv[1]))",
              tmp_path / "out", cwd=src)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith(".whl")
    assert not WARNING.search(out.stderr), WARNING.search(out.stderr).string[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("wheel")
    src = clean_copy(tmp / "src")
    out = run(sys.executable, "-W", "always", "-m", "build", "--wheel", "--no-isolation", "--outdir",
              tmp / "dist", src, cwd=src)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert not WARNING.search(out.stdout + out.stderr), (out.stdout + out.stderr)[-3000:]
    (built,) = (tmp / "dist").glob("pizza_probe-*.whl")
    return str(built)


def test_wheel_holds_the_package_and_the_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert os.path.basename(wheel) == f"pizza_probe-{version()}-py3-none-any.whl"
    assert "exporter/cli.py" in names and "exporter/urls.py" in names
    assert {n.split("/")[0] for n in names} == {"exporter", f"pizza_probe-{version()}.dist-info"}
    license_text = zipfile.ZipFile(wheel).read(f"pizza_probe-{version()}.dist-info/licenses/LICENSE").decode()
    assert license_text.startswith("MIT License") and "pizza-probe contributors" in license_text
    metadata = zipfile.ZipFile(wheel).read(f"pizza_probe-{version()}.dist-info/METADATA").decode()
    assert "Requires-Dist: urllib3" in metadata  # imported by exporter/urls.py, so declared
    assert re.search(r"^License(-Expression)?: MIT$", metadata, re.M)


def test_wheel_runs_in_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    pip = venv / "bin" / "pip"
    for args in (["install", "--require-hashes", "-r", os.path.join(REPO, "requirements.txt")],
                 ["install", "--no-deps", wheel]):
        out = run(pip, "--disable-pip-version-check", "--quiet", *args, cwd=tmp_path, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    check = run(pip, "--disable-pip-version-check", "check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout  # every dependency the wheel declares is there
    probe = venv / "bin" / "pizza-probe"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}

    out = run(probe, "--version", cwd=tmp_path, env=env)
    assert out.returncode == 0 and out.stdout.strip() == f"pizza-probe, version {version()}", out.stderr
    out = run(probe, "--help", cwd=tmp_path, env=env)
    assert out.returncode == 0 and "once" in out.stdout and "serve" in out.stdout, out.stderr

    sim = start_simulator()
    try:
        out = run(probe, "once", "--service-url", sim.service_url, "--factory-url", sim.factory_url,
                  cwd=tmp_path, env=env, timeout=60)
    finally:
        sim.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "order" in out.stdout
    # the wheel's own code ran, not the work tree's
    where = run(venv / "bin" / "python", "-c", "import exporter; print(exporter.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout
