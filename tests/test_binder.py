"""Binder builds the environment the README's `make setup` builds.

`make setup` installs the pinned torch pair, llama-cpp-python through `tools/install_llama_cpp.sh`, the package with
its extras, the no-deps requirements, and chromium for the browser test. Binder installs `binder/requirements.txt`
(CPU torch from the PyTorch CPU index, in place of the pinned pair) and then runs `binder/postBuild`, which must do
the rest in the same order. Only chromium stays out: a Binder user brings a browser. The Makefile is read through
`make -n -B setup`, the commands make would run, so a new step in `setup` shows here.
"""
import re, shutil, subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

try: import tomllib
except ImportError: import tomli as tomllib  # Python 3.10 (the `serve` extra installs it)

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT/"binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NOT_FOR_BINDER = {"browser"}  # chromium is for tests/test_browser.py; on Binder the learner's own browser shows the lab

def _step(cmd:str) -> tuple:
    "What an install command does: ('torch', pins), ('llama',), ('package', extras), ('no-deps', file), ('browser',)."
    if "install_llama_cpp.sh" in cmd: return ("llama",)
    if "install_browser.sh" in cmd: return ("browser",)
    if m := re.search(r"--no-deps\s+-r\s+(\S+)", cmd): return ("no-deps", m.group(1))
    if m := re.search(r"""-e\s+["']?\.\[([^\]]*)\]""", cmd):
        return ("package", frozenset(e.strip() for e in m.group(1).split(",")))
    if re.search(r"pip install", cmd) and re.search(r"\btorch\b", cmd):
        return ("torch", tuple(w for w in cmd.split() if re.match(r"torch(vision)?\b", w)))
    return ("other", cmd)

def make_setup() -> list[tuple]:
    "The steps of `make setup`, as `make -n -B` prints its commands (nothing runs; stamps are ignored)."
    if not shutil.which("make"): pytest.fail("this test reads the Makefile through make: install it (apt-get install -y make)")
    r = subprocess.run(["make", "--no-print-directory", "-n", "-B", "setup", "PYTHON=python"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"make -n setup failed:\n{r.stderr}"
    return [_step(l.strip()) for l in r.stdout.splitlines() if l.strip() and not l.strip().startswith("echo ")]

def postbuild() -> list[tuple]:
    "The steps of `binder/postBuild`."
    lines = [l.strip() for l in (BINDER/"postBuild").read_text().splitlines()]
    return [_step(l) for l in lines if l and not l.startswith(("#", "set "))]

def binder_requirements() -> tuple[list[str], dict[str, Requirement]]:
    "The pip options (index URLs) and the requirements of `binder/requirements.txt`."
    opts, reqs = [], {}
    for l in (BINDER/"requirements.txt").read_text().splitlines():
        l = l.split(" #")[0].strip()
        if not l or l.startswith("#"): continue
        if l.startswith("-"): opts.append(l)
        else: r = Requirement(l); reqs[r.name] = r
    return opts, reqs

def test_postbuild_runs_the_steps_of_make_setup_in_order():
    make = [s for s in make_setup() if s[0] not in ("torch", *NOT_FOR_BINDER)]
    assert not [s for s in make if s[0] == "other"], f"make setup runs a command this test does not know: {make}"
    assert postbuild() == make, "binder/postBuild must install what `make setup` installs, in the same order"

def test_binder_installs_the_same_extras_and_they_exist():
    extras = {s[1] for s in make_setup() if s[0] == "package"}
    assert len(extras) == 1, extras
    assert {s[1] for s in postbuild() if s[0] == "package"} == extras
    known = tomllib.loads((ROOT/"pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras.pop() <= set(known), f"an extra that pyproject.toml does not define: {extras}"

def test_binder_installs_the_no_deps_requirements_and_llama_cpp():
    steps = postbuild()
    assert ("no-deps", "tools/no-deps-requirements.txt") in steps and (ROOT/"tools"/"no-deps-requirements.txt").exists()
    assert ("llama",) in steps and (ROOT/"tools"/"install_llama_cpp.sh").exists()
    # allennlp-light and ai2-tango come after the package, whose requirements they would otherwise pull down
    assert steps.index(("no-deps", "tools/no-deps-requirements.txt")) > max(i for i, s in enumerate(steps) if s[0] == "package")

def test_binder_torch_is_cpu_and_agrees_with_pyproject_and_the_pins():
    opts, reqs = binder_requirements()
    assert any(o.split()[0] in ("--extra-index-url", "--index-url") and o.split()[-1].rstrip("/") == CPU_INDEX for o in opts), \
        f"binder/requirements.txt should take torch from the PyTorch CPU index ({CPU_INDEX}): {opts}"
    pins = {}
    for step in make_setup():
        if step[0] == "torch": pins.update(dict(p.split("==") for p in step[1]))
    assert set(pins) == {"torch", "torchvision"}, pins
    project = {Requirement(r).name: Requirement(r) for r in tomllib.loads((ROOT/"pyproject.toml").read_text())["project"]["dependencies"]}
    for name, pinned in pins.items():
        assert name in reqs, f"binder/requirements.txt does not name {name}"
        assert reqs[name].specifier.contains(pinned), f"Binder's {reqs[name]} excludes the Makefile's {name}=={pinned}"
    lowest = max((Version(s.version) for s in reqs["torch"].specifier if s.operator in (">=", "==", "~=")), default=None)
    assert lowest is not None, f"binder/requirements.txt should give torch a lower bound: {reqs['torch']}"
    assert project["torch"].specifier.contains(lowest), f"Binder allows torch {lowest}, pyproject.toml asks {project['torch']}"
