"""Lesson 09b, quick mode: how long the lesson takes, per cell, in CPU time and wall time, and under `nbdev-test`.

Two measurements, each with an empty cache (a fresh LLMCOURSE_HOME, so lesson 09's CLIP is trained, not loaded):

1. `cells`: the notebook runs in this process the way `nbdev-test` runs it (execnb's shell, the same skipped flags),
   with torch held to `--threads` threads; each cell's wall time and the process's CPU time (all threads) are taken.
2. `nbdev-test`: `nbdev-test nbs/09b_diffusion.ipynb` as a child process, its wall time and CPU time (user + system).

The machine may be shared; the load average is written beside every wall time. With one thread, a process that never
waits for a core takes about its CPU time in wall time, so the CPU time of the one-thread run (startup included)
estimates the wall time on an idle machine; with two threads on two idle cores the wall can only be shorter if the
second thread does work, which the two-thread CPU time over its wall shows.

Writes quick_time_cells.json and quick_time_nbdev_test.json, and a section of RESULTS.md for each.

Usage: python bench/09b_diffusion/quick_time.py [--threads 1] [--skip-cells] [--skip-nbdev-test]
"""
import argparse, atexit, os, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1, help="torch threads for the per-cell run (0: as the lesson decides)")
ap.add_argument("--skip-cells", action="store_true"); ap.add_argument("--skip-nbdev-test", action="store_true")
args = ap.parse_args()
NB = harness.ROOT/"nbs"/"09b_diffusion.ipynb"
env_keep = {k: os.environ.get(k) for k in ("LLMCOURSE_HOME",)}
cpu = lambda who: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(who))
load = lambda: [round(x, 2) for x in os.getloadavg()]
res = dict(threads=args.threads)
def fresh_home() -> str:
    "An empty LLMCOURSE_HOME for one measurement, removed when the script ends."
    d = tempfile.mkdtemp(prefix="llmcourse-time-"); atexit.register(shutil.rmtree, d, True)
    return d

if not args.skip_cells:
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell
    from execnb.shell import CaptureShell
    from fastcore.foundation import working_directory
    os.environ["LLMCOURSE_HOME"] = fresh_home()
    os.environ["LLMCOURSE_MODE"], os.environ["IN_TEST"] = "quick", "1"
    flags = get_config(NB.parent).tst_flags.split()
    nb = NBProcessor(NB, rm_directives=False, process=True).nb
    skip, rows, mark = _skip_cell(nb, flags), [], {}
    def pre(cell):
        s = skip(cell)
        if not s: mark.update(wall=time.perf_counter(), cpu=time.process_time(), load=load())
        return s
    def post(cell):
        rows.append(dict(id=cell.id, wall_s=time.perf_counter() - mark["wall"], cpu_s=time.process_time() - mark["cpu"],
                         load_before=mark["load"], first_line=cell.source.splitlines()[0][:80] if cell.source else ""))
    shell = CaptureShell(NB)
    if args.threads:  # the lesson sets its own thread count from the load; hold it to --threads instead
        shell.run_cell(f"import torch; torch.set_num_threads({args.threads}); torch.set_num_threads = lambda n: None")
    c0, w0, l0 = cpu(resource.RUSAGE_SELF), time.perf_counter(), load()
    with working_directory(NB.parent): shell.run_all(nb, exc_stop=True, preproc=pre, postproc=post)
    ns = shell.user_ns  # the lesson's own figures, from its variables
    lesson = dict(chosen=dict(scale=ns["best_scale"], steps=ns["best_steps"]), test={k: v["match"] for k, v in ns["test"].items()})
    res["cells"] = dict(lesson=lesson, process_cpu_s=cpu(resource.RUSAGE_SELF), cells_cpu_s=sum(r["cpu_s"] for r in rows), cells_wall_s=time.perf_counter() - w0,
                        load_before=l0, load_after=load(), per_cell=rows)
    for k, v in env_keep.items():
        if v is None: os.environ.pop(k, None)
        else: os.environ[k] = v

if not args.skip_nbdev_test:
    env = dict(os.environ, LLMCOURSE_HOME=fresh_home(), PYTHONPATH=str(harness.ROOT))
    env.pop("LLMCOURSE_MODE", None); env.pop("IN_TEST", None)
    c0, w0, l0 = cpu(resource.RUSAGE_CHILDREN), time.perf_counter(), load()
    p = subprocess.run(["nbdev-test", str(NB)], cwd=harness.ROOT, env=env, capture_output=True, text=True)
    res["nbdev_test"] = dict(passed=p.returncode == 0, wall_s=time.perf_counter() - w0, cpu_s=cpu(resource.RUSAGE_CHILDREN) - c0,
                             load_before=l0, load_after=load())
    if p.returncode: print(p.stdout[-3000:], p.stderr[-3000:])

lines = []
if "cells" in res:
    c = res["cells"]; top = sorted(c["per_cell"], key=lambda r: -r["cpu_s"])[:8]
    lines += [f"Per cell, in this process with torch held to {args.threads} thread(s), empty cache: CPU time of the cells "
              f"{c['cells_cpu_s']:.0f} s, of the whole process (interpreter start and imports included) {c['process_cpu_s']:.0f} s; "
              f"wall time of the cells {c['cells_wall_s']:.0f} s at load average {c['load_before']} before and {c['load_after']} after.",
              "", "| cell | first line | CPU s | wall s | load before |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['id']} | `{r['first_line'].replace('|', '/')}` | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | {r['load_before'][0]} |" for r in top]
    lines += ["", f"The {len(c['per_cell']) - len(top)} other cells took {c['cells_cpu_s'] - sum(r['cpu_s'] for r in top):.1f} s of CPU time together."]
    if args.threads == 1:
        lines += ["", f"Estimate of the wall time on an idle 2-core machine: at most the one-thread process CPU time, {c['process_cpu_s']:.0f} s "
                  f"({c['process_cpu_s'] / 60:.1f} min), against the lesson's limit of 240 s."]
    lines += ["", f"The lesson's own figures in this run: guidance {c['lesson']['chosen']['scale']}, {c['lesson']['chosen']['steps']} DDIM steps; "
              + "; ".join(f"test {k}: {m[0]:.1%} [{m[1]:.1%}, {m[2]:.1%}]" for k, m in c["lesson"]["test"].items()) + "."]
    name = "quick_time_cells" + (f"_{args.threads}threads" if args.threads != 1 else "")
    harness.record(__file__, name, res)
    harness.write_section(__file__, name, f"## Quick mode: time per cell, {args.threads} thread(s)\n\n" + harness.machine_line() + "\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
if "nbdev_test" in res:
    n = res["nbdev_test"]
    line = (f"`nbdev-test nbs/09b_diffusion.ipynb` ({'passed' if n['passed'] else 'FAILED'}), the lesson choosing its threads, empty cache: "
            f"wall {n['wall_s']:.0f} s, CPU time {n['cpu_s']:.0f} s, load average {n['load_before']} before and {n['load_after']} after.")
    harness.record(__file__, "quick_time_nbdev_test", res["nbdev_test"])
    harness.write_section(__file__, "quick_time_nbdev_test", "## Quick mode: nbdev-test\n\n" + harness.machine_line() + "\n\n" + line + "\n")
    print(line)
