"""The `--resume-file` option `make slow` uses to pick up an interrupted run of the slow tests."""
import json, os, subprocess, sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

def test_resume_file_skips_only_tests_that_passed_with_the_same_code(tmp_path):
    counter, record = tmp_path/"count", tmp_path/"record.json"
    (tmp_path/"conftest.py").write_text(f"import sys; sys.path.insert(0, {str(HERE)!r})\nfrom resume_plugin import *\n")
    def module(extra=""):
        (tmp_path/"test_m.py").write_text(
            "import os\n"
            f"def test_counts(): open({str(counter)!r}, 'a').write('x'){extra}\n"
            "def test_fails_until_fixed(): assert os.environ.get('FIXED')\n")
    def go(*args, **env):
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                               str(tmp_path), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**os.environ, **env})
    module()
    r = go("--resume-file", str(record))
    assert r.returncode == 1 and counter.read_text() == "x", r.stdout
    assert list(json.loads(record.read_text())["passed"]) == ["test_m.py::test_counts"]  # the failure is not recorded
    r = go("--resume-file", str(record))  # the passed test is kept; the failing one runs again
    assert r.returncode == 1 and counter.read_text() == "x" and "1 deselected" in r.stdout, r.stdout
    assert "test_m.py::test_counts: passed at" in r.stdout
    r = go("--resume-file", str(record), FIXED="1")
    assert r.returncode == 0 and counter.read_text() == "x", r.stdout
    r = go("--resume-file", str(record), FIXED="1")
    assert r.returncode == 0 and "2 deselected" in r.stdout and counter.read_text() == "x", r.stdout  # all passed before
    module("  # edited")
    assert go("--resume-file", str(record), FIXED="1").returncode == 0 and counter.read_text() == "xx"  # edited: runs again
    assert go(FIXED="1").returncode == 0 and counter.read_text() == "xxx"  # without the option everything runs
    record.write_text("{not json")
    r = go("--resume-file", str(record))
    assert r.returncode == 4 and "is not a record this option wrote" in r.stderr, r.stdout + r.stderr
