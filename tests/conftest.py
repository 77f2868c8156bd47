"""Shared fixtures: an isolated llmcourse home, the shared data mirror, and a small HTTP server on 127.0.0.1."""
import os, threading, http.server, functools, socket
from pathlib import Path
import pytest
from resume_plugin import (pytest_addoption, pytest_configure, pytest_collection_modifyitems,  # --resume-file, for make slow
                           pytest_runtest_logreport, pytest_sessionfinish, pytest_terminal_summary)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LLMCOURSE_PROGRESS", "0")
os.environ["LLMCOURSE_OFFLINE"] = "1"  # tests never reach for a public address; they use the mirror and loopback servers
os.environ.setdefault("MPLBACKEND", "Agg")

MIRROR = os.environ.get("LLMCOURSE_MIRROR")

@pytest.fixture
def home(tmp_path, monkeypatch):
    "An empty LLMCOURSE_HOME for one test."
    monkeypatch.setenv("LLMCOURSE_HOME", str(tmp_path/"home"))
    return tmp_path/"home"

@pytest.fixture(scope="session")
def mirror_folder():
    "The data mirror folder named by LLMCOURSE_MIRROR (the tests need it: they never touch public hosts)."
    if not MIRROR or "://" in MIRROR or not Path(MIRROR).is_dir():
        pytest.fail("LLMCOURSE_MIRROR is not set to a mirror folder of the data sets: run the tests with "
                    "LLMCOURSE_MIRROR=/path/to/mirror (CI uses the shared data mirror beside the clone)", pytrace=False)
    return Path(MIRROR).resolve()

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture
def http_server():
    "Start a loopback HTTP server on a free port: `http_server(folder)` or `http_server(handler_class)` gives its URL."
    servers = []
    def start(what):
        handler = functools.partial(_Quiet, directory=str(what)) if isinstance(what, (str, Path)) else what
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"
    yield start
    for s in servers: s.shutdown(); s.server_close()

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]
