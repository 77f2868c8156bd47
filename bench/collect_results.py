#!/usr/bin/env python
"""Gather every lesson's bench/NN_lesson/RESULTS.md into bench/RESULTS.md, in the order of the course (cli.COURSE).

Runs saved by slow cells with `llmcourse.core.save_run` (under LLMCOURSE_HOME/runs/) are copied into their lesson's
bench folder first, so `make slow` leaves their latest numbers in the repository.
"""
import json, shutil
from pathlib import Path
from llmcourse.cli import COURSE
from llmcourse.core import cache_dir

here = Path(__file__).resolve().parent
copied = []
for run in sorted(cache_dir("runs").glob("*/*.json")):
    dest = here/run.parent.name/"runs"/run.name
    dest.parent.mkdir(parents=True, exist_ok=True); shutil.copyfile(run, dest); copied.append(dest.relative_to(here))
parts = [here/l.stem/"RESULTS.md" for l in COURSE if (here/l.stem/"RESULTS.md").exists()]
out = ["# Benchmark results", "",
       "Every lesson's `bench/NN_lesson/RESULTS.md`, gathered by `python bench/collect_results.py` in course order. Each",
       "section is written by the script it names, with the command, the commit and the machine.", ""]
out += [f"- [{p.parent.name}](#{p.parent.name})" for p in parts] + [""]
for p in parts:
    text = p.read_text().strip()
    if text.startswith("# "): text = "#" + text # each lesson's title becomes a section here
    out += [f'<a id="{p.parent.name}"></a>', "", text, ""]
(here/"RESULTS.md").write_text("\n".join(out))
print(f"bench/RESULTS.md: {len(parts)} lessons; copied {len(copied)} runs from {cache_dir('runs')}")
