"""The `llmcourse` console command: data, doctor, run, docs."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from llmcourse import cli, data

ROOT = Path(__file__).resolve().parent.parent

def run(*args, env=None, cwd=ROOT, timeout=600):
    return subprocess.run(["llmcourse", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})

def test_data_list_names_every_resource():
    r = run("data", "list")
    assert r.returncode == 0
    for name in data.REGISTRY: assert name in r.stdout

def test_data_fetch_and_verify(home, mirror_folder):
    env = {"LLMCOURSE_HOME": str(home), "LLMCOURSE_MIRROR": str(mirror_folder)}
    r = run("data", "fetch", "tiny_shakespeare", "elmo_test_vectors", env=env)
    assert r.returncode == 0, r.stderr
    r = run("data", "verify", env=env)
    assert r.returncode == 0 and "verify" in r.stdout
    (home/"data"/"tinyshakespeare"/"input.txt").write_text("changed")
    r = run("data", "verify", env=env)
    assert r.returncode == 1 and "tiny_shakespeare/input.txt" in r.stdout

def test_data_fetch_unknown_name_is_a_clear_error():
    r = run("data", "fetch", "imagenet")
    assert r.returncode == 2 and "No resource named 'imagenet'" in r.stderr

def test_data_fetch_offline_without_mirror_is_a_clear_error(home, tmp_path):
    # with LLMCOURSE_OFFLINE=1 and an empty mirror nothing is reachable: the message says what to set
    r = run("data", "fetch", "sst2", env={"LLMCOURSE_HOME": str(home), "LLMCOURSE_MIRROR": str(tmp_path/"none"),
                                          "LLMCOURSE_OFFLINE": "1"})
    assert r.returncode == 2 and "LLMCOURSE_MIRROR" in r.stderr and "sst2" in r.stderr
    assert "skipped: LLMCOURSE_OFFLINE=1" in r.stderr

def test_doctor_passes_here_and_prints_one_line_each():
    r = run("doctor")
    assert r.returncode == 0, r.stdout
    lines = r.stdout.strip().splitlines()
    assert all(l.split()[0] in ("ok", "missing", "optional", "warn") for l in lines)
    assert any(l.startswith("ok") and "llama.cpp runs" in l for l in lines)

def test_doctor_fails_when_a_shipped_model_is_missing(monkeypatch, capsys):
    def gone(): raise data.MissingExtra("not installed: pip install 'llmcourse[audio]'")
    monkeypatch.setitem(data.SHIPPED_MODELS, "whisper_tiny_en", gone)
    assert cli.doctor() == 1
    assert "missing  model whisper_tiny_en" in capsys.readouterr().out

def test_run_executes_a_lesson_and_prints_a_timing_table(tmp_path, mirror_folder):
    r = run("run", "00", "--build", str(tmp_path), env={"LLMCOURSE_MIRROR": str(mirror_folder)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "00_core" in r.stdout and "seconds" in r.stdout and "total" in r.stdout
    nb = json.loads((tmp_path/"00_core"/"00_core.ipynb").read_text())
    assert json.loads((tmp_path/"timings.json").read_text())[0]["status"] == "ok"
    assert any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")

def test_run_reports_a_failing_lesson(tmp_path, monkeypatch):
    nbs = tmp_path/"repo"/"nbs"; nbs.mkdir(parents=True)
    (tmp_path/"repo"/"pyproject.toml").write_text((ROOT/"pyproject.toml").read_text())
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "id": "a1",
            "source": ["raise RuntimeError('lesson broke')"]}
    (nbs/"00_broken.ipynb").write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    r = run("run", "--build", str(tmp_path/"b"), cwd=tmp_path/"repo")
    assert r.returncode == 1 and "FAILED" in r.stdout

def test_run_resume_skips_only_lessons_that_passed_with_the_same_notebook(tmp_path):
    "--resume keeps a passed lesson's run; a failed lesson, an edited notebook or a run without --resume executes again."
    nbs, counter = tmp_path/"repo"/"nbs", tmp_path/"count"
    nbs.mkdir(parents=True)
    (tmp_path/"repo"/"pyproject.toml").write_text((ROOT/"pyproject.toml").read_text())
    def lesson(stem, code):
        cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "id": "a1", "source": [code]}
        (nbs/f"{stem}.ipynb").write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    count = f"open({str(counter)!r}, 'a').write('x')"
    lesson("00_counts", count)
    lesson("01_broken", "raise RuntimeError('lesson broke')")
    go = lambda *extra: run("run", "--build", str(tmp_path/"b"), *extra, cwd=tmp_path/"repo")
    r = go("--resume")
    assert r.returncode == 1 and counter.read_text() == "x" and (tmp_path/"b"/"00_counts"/"passed.json").exists()
    assert not (tmp_path/"b"/"01_broken"/"passed.json").exists()
    r = go("--resume")  # the passed lesson is kept, the broken one runs (and fails) again
    assert r.returncode == 1 and counter.read_text() == "x", r.stdout
    assert "00_counts: passed at" in r.stdout and "ok*" in r.stdout and "running 01_broken" in r.stdout
    lesson("01_broken", "1 + 1")
    r = go("--resume")
    assert r.returncode == 0 and counter.read_text() == "x", r.stdout + r.stderr
    lesson("00_counts", count + "  # edited")
    assert go("--resume").returncode == 0 and counter.read_text() == "xx"  # an edited notebook runs again
    assert go().returncode == 0 and counter.read_text() == "xxx"  # and without --resume everything runs

def test_run_tells_the_lesson_whether_slow_cells_run(tmp_path):
    "`flags_skipped()` inside a lesson agrees with the runner: a cell after a slow one can tell whether it ran."
    nbs = tmp_path/"repo"/"nbs"; nbs.mkdir(parents=True)
    (tmp_path/"repo"/"pyproject.toml").write_text((ROOT/"pyproject.toml").read_text())
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "id": f"a{i}", "source": [s]} for i, s in
             enumerate(["ran = False", "#| slow\nran = True",
                        "from llmcourse.core import flags_skipped\nassert ('slow' not in flags_skipped()) == ran, (flags_skipped(), ran)"])]
    (nbs/"00_flags.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    for extra, env in (((), {}), (("--slow",), {}), ((), {"LLMCOURSE_SLOW": "1"}), (("--slow",), {"LLMCOURSE_SLOW": "0"})):
        r = run("run", "--build", str(tmp_path/"b"), *extra, cwd=tmp_path/"repo", env=env)
        assert r.returncode == 0, (extra, env, r.stdout + r.stderr)

def test_run_unknown_lesson():
    r = run("run", "77")
    assert r.returncode == 2 and "No lesson '77'" in r.stderr

def test_the_cli_reference_notebook_runs_in_the_checkout():
    "nbs/90_cli.ipynb is not a lesson (it documents the checkout's tools, so `llmcourse run` leaves it out): run it here."
    exe = shutil.which("nbdev-test")
    assert exe, "nbdev-test is missing: pip install -e '.[dev]'"
    r = subprocess.run([exe, "nbs/90_cli.ipynb"], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
