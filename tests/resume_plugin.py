"""`--resume-file FILE`: pick up an interrupted run of long tests (`make slow`) where it stopped.

Each test that passes is recorded in FILE with what it depended on: the sha256 of its test module and of the
conftest beside it, and `core.package_fingerprint()` (every file of the installed package). On the next run with the
same FILE, a test whose record matches all three is deselected and listed in the summary as passed before; change
the test, its conftest or any file of the package and it runs again. A failed or unfinished test is never recorded."""
import hashlib, json, os, time
from pathlib import Path
import pytest

_state = {}

def pytest_addoption(parser):
    parser.addoption("--resume-file", metavar="FILE", default=None,
                     help="record passed tests in FILE and skip those it records as passed with the same test and package code")

def _sha(path:Path) -> str|None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None

def _key(item, code:str) -> dict:
    return dict(module=_sha(Path(item.path)), conftest=_sha(Path(item.path).parent/"conftest.py"), code=code)

def pytest_configure(config):
    f = config.getoption("resume_file")
    if not f: return
    from llmcourse.core import package_fingerprint
    path = Path(f)
    try: record = json.loads(path.read_text())
    except FileNotFoundError: record = {}
    except ValueError as e: raise pytest.UsageError(f"--resume-file {path} is not a record this option wrote ({e}); delete it to start afresh")
    _state.update(path=path, code=package_fingerprint(), passed=record.get("passed", {}), keys={}, earlier=[], call={})

def pytest_collection_modifyitems(config, items):
    if "path" not in _state: return
    keep, earlier = [], []
    for item in items:
        _state["keys"][item.nodeid] = key = _key(item, _state["code"])
        before = _state["passed"].get(item.nodeid)
        if before and before.get("key") == key: earlier.append((item, before))
        else: keep.append(item)
    if earlier:
        config.hook.pytest_deselected(items=[i for i, _ in earlier])
        items[:] = keep
        _state["earlier"] = [(i.nodeid, b) for i, b in earlier]

def pytest_runtest_logreport(report):
    if "path" not in _state or report.nodeid not in _state["keys"]: return
    if report.when == "call": _state["call"][report.nodeid] = (report.passed, report.duration)
    if report.when != "teardown": return
    passed, seconds = _state["call"].pop(report.nodeid, (False, 0.0))
    _state["passed"].pop(report.nodeid, None)
    if passed and report.passed:
        _state["passed"][report.nodeid] = dict(key=_state["keys"][report.nodeid], seconds=round(seconds, 1),
                                               finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    path = _state["path"]; path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    partial.write_text(json.dumps(dict(passed=_state["passed"]), indent=1))
    os.replace(partial, path)  # written whole after every test: an interrupted run loses only the test it was in

def pytest_sessionfinish(session, exitstatus):
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and _state.get("earlier"):
        session.exitstatus = pytest.ExitCode.OK  # every selected test passed before: the run is complete, not empty

def pytest_terminal_summary(terminalreporter):
    if not _state.get("earlier"): return
    tr = terminalreporter
    tr.write_sep("-", f"{len(_state['earlier'])} passed in an earlier run with the same code (--resume-file {_state['path'].name})")
    for nodeid, before in _state["earlier"]: tr.write_line(f"{nodeid}: passed at {before['finished']} in {before['seconds']:.0f} s")
