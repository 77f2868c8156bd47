"""Every lesson runs the way a learner runs it: from a wheel installed outside the repository, in an empty folder.

The session fixture builds the wheel, installs it (without `-e`, without dependencies) into a fresh virtual
environment that reuses this interpreter's packages, and runs every lesson in quick mode with `llmcourse run` from
that environment, in an empty temporary folder, with a fresh LLMCOURSE_HOME. `make course` runs the same function
(`llmcourse.cli.run_lessons`) from the development install, so the two cannot disagree; a lesson that finds a file
through the working folder or the repository fails here.
"""
import json, os, subprocess, sys, venv
from pathlib import Path
import pytest
from llmcourse import cli

ROOT = Path(__file__).resolve().parent.parent
LESSONS = [l.stem for l in cli.COURSE if (ROOT/"nbs"/f"{l.stem}.ipynb").exists()]

def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r

@pytest.fixture(scope="session")
def outside_install(tmp_path_factory):
    "A virtual environment holding the wheel of this checkout, and the folders to run it in."
    tmp = tmp_path_factory.mktemp("outside")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp/"dist"), str(ROOT)])
    wheel = next((tmp/"dist").glob("llmcourse-*.whl"))
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(tmp/"venv")
    py = tmp/"venv"/"bin"/"python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--force-reinstall", str(wheel)])
    empty = tmp/"empty"; empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(LLMCOURSE_HOME=str(tmp/"home"), PATH=f"{py.parent}{os.pathsep}{os.environ['PATH']}")
    return dict(tmp=tmp, py=py, wheel=wheel, empty=empty, env=env)

def test_the_wheel_carries_the_package_and_its_assets(outside_install):
    import zipfile
    names = zipfile.ZipFile(outside_install["wheel"]).namelist()
    assert "llmcourse/assets/serve/models.yaml" in names
    shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT/"llmcourse"/"assets").rglob("*") if p.is_file())
    assert not [n for n in shipped if n not in names], "files under llmcourse/assets missing from the wheel"

def test_the_venv_imports_the_wheel_not_the_checkout(outside_install):
    r = _run([str(outside_install["py"]), "-c", "import llmcourse, llmcourse.core as c; print(llmcourse.__file__); print(c.asset_path())"],
             cwd=outside_install["empty"], env=outside_install["env"])
    here, assets = r.stdout.split()
    assert str(outside_install["tmp"]/"venv") in here and str(ROOT) not in here and str(ROOT) not in assets

@pytest.fixture(scope="session")
def course_run(outside_install):
    "Run every lesson from the outside install, two at a time; the rows of its timing table."
    o = outside_install
    build = o["tmp"]/"course"
    jobs = str(min(2, os.cpu_count() or 1))
    r = subprocess.run([str(o["py"].parent/"llmcourse"), "run", "--nbs", str(ROOT/"nbs"), "--build", str(build), "--jobs", jobs],
                       cwd=o["empty"], env={**o["env"], "LLMCOURSE_MODE": "quick"}, capture_output=True, text=True, timeout=3600)
    print(r.stdout[-4000:]); print(r.stderr[-4000:], file=sys.stderr)
    rows = {row["lesson"]: row for row in json.loads((build/"timings.json").read_text())}
    assert sorted(os.listdir(o["empty"])) == [], "a lesson wrote into the folder it was started from"
    return rows, build, r.stdout + r.stderr

@pytest.mark.timeout(3600)
@pytest.mark.parametrize("stem", LESSONS)
def test_lesson_runs_outside_the_repository(course_run, stem):
    rows, build, log = course_run
    assert stem in rows, f"{stem} was not run"
    if rows[stem]["status"] != "ok":
        from nbdev.test import test_nb  # noqa: F401 (the error is in the log)
        pytest.fail(f"{stem} failed when run from the installed wheel outside the repository:\n" +
                    "\n".join(l for l in log.splitlines() if stem in l or "Error" in l or "Traceback" in l)[-4000:])

def test_run_all_in_quick_mode_skips_flagged_cells(monkeypatch, capsys):
    # a learner's "Run All" in JupyterLab or Colab: the setup cell makes flagged cells say why they do not run
    from IPython.core.interactiveshell import InteractiveShell
    monkeypatch.delenv("IN_TEST", raising=False); monkeypatch.setenv("LLMCOURSE_MODE", "quick")
    shell = InteractiveShell.instance()
    try:
        assert shell.run_cell("from llmcourse.core import skip_flagged_cells\nskip_flagged_cells()").success
        r = shell.run_cell("#| full\n#| net\nraise RuntimeError('this would download a checkpoint')")
        assert r.success and "skipped: this cell is flagged full, net" in capsys.readouterr().out
        assert not shell.run_cell("raise RuntimeError('an ordinary cell still runs')").success
        monkeypatch.setenv("LLMCOURSE_MODE", "full")
        assert not shell.run_cell("#| full\nraise RuntimeError('full mode runs it')").success
    finally:
        InteractiveShell.clear_instance()
