"""The small harness every bench script shares: the machine line, the commit and the command, and the files a run writes.

A script in `bench/NN_lesson/` calls `record(__file__, "name", results)` to write `bench/NN_lesson/name.json` (results
with the command, the commit, the machine and the time; no machine paths) and `write_section(__file__, "name",
markdown)` to replace its own section of `bench/NN_lesson/RESULTS.md`. `python bench/collect_results.py` gathers
every lesson's RESULTS.md into `bench/RESULTS.md` in course order.
"""
from __future__ import annotations
import datetime, json, os, platform, re, subprocess, sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

def commit() -> str:
    "The commit the checkout is at, with `-dirty` when tracked files differ from it."
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError): return "unknown"

def machine() -> dict:
    "What the numbers were measured on: CPU model and flags that matter, cores, threads, load, versions."
    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.*)", info).group(1).strip()
        fl = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile") if f in fl)
    except (OSError, AttributeError): pass
    out = dict(cpu=cpu, flags=flags, cores=os.cpu_count(), python=platform.python_version(),
               load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None)
    try:
        import torch
        out.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError: pass
    return out

def machine_line(m:dict|None=None) -> str:
    "One line naming the machine, for a RESULTS.md section."
    m = m or machine()
    return (f"{m['cpu']} ({m.get('flags') or 'no AVX-512'}), {m['cores']} cores, torch {m.get('torch', '-')} with "
            f"{m.get('torch_threads', '-')} threads, Python {m['python']}, load average {m.get('load_average')}")

def command() -> str:
    "The command that is running, relative to the repository, without machine paths."
    args = [scrub(a) for a in sys.argv]
    if args and args[0].endswith(".py"): args = ["python", args[0]] + args[1:]
    return " ".join(args)

def scrub(text:str) -> str:
    "`text` with this machine's paths (the checkout, the home folder, the interpreter's prefix) taken out."
    for path, name in ((str(ROOT), "."), (sys.prefix, "<python>"), (str(Path.home()), "~")):
        text = text.replace(path + "/", "" if name == "." else name + "/").replace(path, name)
    return text

def lesson_dir(script:str|Path) -> Path:
    "The bench folder of the lesson a script lives in (bench/NN_lesson/)."
    d = Path(script).resolve().parent
    if not re.match(r"^\d\d[a-z]?_", d.name): raise ValueError(f"{script} is not in a bench/NN_lesson/ folder")
    return d

def record(script:str|Path, name:str, results:dict) -> Path:
    "Write `results` with the command, commit, machine and date to `bench/NN_lesson/<name>.json`."
    payload = dict(command=command(), commit=commit(), machine=machine(),
                   date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), results=results)
    text = scrub(json.dumps(payload, indent=1, default=str))
    out = lesson_dir(script)/f"{name}.json"
    out.write_text(text + "\n")
    return out

def write_section(script:str|Path, name:str, markdown:str) -> Path:
    "Replace section `name` of `bench/NN_lesson/RESULTS.md` with `markdown` (added at the end if new)."
    d = lesson_dir(script); path = d/"RESULTS.md"
    start, end = f"<!-- section: {name} -->", f"<!-- end: {name} -->"
    block = f"{start}\n{scrub(markdown.strip())}\n{end}"
    text = path.read_text() if path.exists() else f"# {d.name}\n\nWritten by the scripts in this folder; do not edit by hand.\n"
    if start in text and end in text:
        text = text.split(start)[0] + block + text.split(end, 1)[1]
    else: text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path
