"""Start `llmcourse serve` in a subprocess for the serving benchmarks (batching.py, load_test.py)."""
import subprocess, sys, time

import httpx


def start_server(threads:int, *extra:str) -> tuple:
    "`llmcourse serve` with the shipped models and `extra` arguments, in a subprocess; (process, URL) once `/health` answers."
    from llmcourse.serve import free_port
    port = free_port()
    code = "import sys; from llmcourse.serve import serve_cli; sys.exit(serve_cli(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "--port", str(port), "--threads", str(threads), *extra,
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200: return proc, url
        except httpx.TransportError: time.sleep(0.2)
        if proc.poll() is not None: raise RuntimeError(f"the server exited with {proc.returncode}")
    proc.kill()
    raise TimeoutError("the server did not answer /health within ten minutes")
