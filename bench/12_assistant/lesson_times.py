"""How long lessons 12 and 13 take in quick mode: `nbdev-test` on each notebook, 12 first, then 13 (which loads the
assistants lesson 12 saved), in a fresh `LLMCOURSE_HOME`. Wall time and CPU time (user + system of the run), with the
load average of the machine before and after, since a shared machine stretches the wall time.

    python bench/12_assistant/lesson_times.py [--home EMPTY_FOLDER]

Writes `lesson_times.json` and the `lesson_times` section of `RESULTS.md`.
"""
import argparse, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

LESSONS = ("12_assistant", "13_leaderboard")

def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN); return r.ru_utime + r.ru_stime

def main(home:str|None):
    home = home or tempfile.mkdtemp(prefix="llmcourse-home-")
    if os.listdir(home): raise SystemExit(f"{home} is not empty: the timing needs a fresh LLMCOURSE_HOME")
    env = dict(os.environ, LLMCOURSE_HOME=home, PYTHONPATH=str(harness.ROOT))
    runs = []
    for stem in LESSONS:
        load0, t0, c0 = os.getloadavg()[0], time.perf_counter(), cpu_seconds()
        p = subprocess.run(["nbdev-test", f"nbs/{stem}.ipynb"], cwd=harness.ROOT, env=env, capture_output=True, text=True)
        runs.append(dict(lesson=stem, ok=p.returncode == 0, wall_s=round(time.perf_counter() - t0, 1),
                         cpu_s=round(cpu_seconds() - c0, 1), load_before=round(load0, 2), load_after=round(os.getloadavg()[0], 2)))
        print(runs[-1], flush=True)
        if p.returncode: print(p.stdout[-3000:], p.stderr[-3000:])
    sys.argv = ["EMPTY_FOLDER" if a == home else a for a in sys.argv] # the command as recorded names no machine path
    harness.record(__file__, "lesson_times", dict(runs=runs))
    rows = "\n".join(f"| {r['lesson']} | {'passes' if r['ok'] else 'FAILS'} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
                     f"{r['load_before']} / {r['load_after']} |" for r in runs)
    harness.write_section(__file__, "lesson_times", f"## Lesson run times\n\n`{harness.command()}` at {harness.commit()} on "
                          f"{harness.machine_line()}, a fresh `LLMCOURSE_HOME`, lesson 12 first.\n\n"
                          "| notebook | nbdev-test | wall s | CPU s | load average before / after |\n| --- | --- | --- | --- | --- |\n" + rows)

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", help="an empty folder for LLMCOURSE_HOME, kept afterwards (default: a new temporary one)")
    main(ap.parse_args().home)
