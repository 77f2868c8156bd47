#!/usr/bin/env python
"""How long a lesson's setup cell takes to install the package where it is missing, as on Colab.

A fresh virtual environment gets the pinned torch pair first (Colab brings its own torch; that install is not timed),
then the wheel of this checkout with each lesson group's extras, as `cli.install_commands` gives them, timed one after
the other. Colab already has most of the core packages (numpy, pandas, transformers, ...), so its install is shorter
than the first row here. llama-cpp-python is built from source (`llama` extra) and timed separately with --llama.
"""
import argparse, subprocess, sys, tempfile, time, venv
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import ROOT, record, write_section, machine_line

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--llama", action="store_true", help="also time the llama extra (builds llama-cpp-python, 6-8 min on 2 cores)")
a = ap.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(ROOT)], check=True)
    wheel = next(tmp.glob("llmcourse-*.whl"))
    venv.EnvBuilder(with_pip=True).create(tmp/"venv")
    pip = [str(tmp/"venv"/"bin"/"python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.14.1", "torchvision==0.29.1"], check=True)   # Colab's own torch: not timed
    steps = [("core (lessons 00, 02, 05, 06, 07b, 08, 09, 09c)", "full"), ("+ audio (lessons 01, 10, 10a, 10b)", "audio,full"),
             ("+ elmo, ulmfit, bert, rl", "elmo,ulmfit,bert,rl,full")] + ([("+ llama (lessons 11, 11a, 13; builds llama.cpp)", "llama,full")] if a.llama else [])
    rows = []
    for label, extras in steps:
        t = time.perf_counter()
        subprocess.run(pip + [f"llmcourse[{extras}] @ {wheel.as_uri()}"], check=True)
        rows.append(dict(step=label, extras=extras, seconds=round(time.perf_counter() - t, 1)))
        print(rows[-1])

record(__file__, "install_time", dict(steps=rows))
table = "\n".join(f"| {r['step']} | `[{r['extras']}]` | {r['seconds']:.0f} s |" for r in rows)
write_section(__file__, "install_time", f"""## The setup cell's install, as on Colab

`python bench/00_core/install_time.py{' --llama' if a.llama else ''}`: a fresh virtual environment with torch only, then the
package from a wheel of this checkout with each group's extras, one after the other, from PyPI. Colab has most of the
core packages already, so its first step is shorter. {machine_line()}.

| step | extras | wall time |
| --- | --- | --- |
{table}
""")
