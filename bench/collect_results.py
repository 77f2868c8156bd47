#!/usr/bin/env python
"""Gather the last results of every benchmark (bench/RESULTS_<lesson>.md, written by each script) into bench/RESULTS.md."""
from pathlib import Path

here = Path(__file__).resolve().parent
order = ["tokenizers", "elmo", "ulmfit", "transformer", "gpt", "clip", "whisper", "llama", "serve"]
parts = sorted(here.glob("RESULTS_*.md"), key=lambda p: (order.index(p.stem[8:]) if p.stem[8:] in order else 99, p.stem))
out = ["# Benchmark results", "",
       "The last results of every script in `bench/`, gathered by `python bench/collect_results.py` from the",
       "`RESULTS_<lesson>.md` file each script writes. Each section names its machine, threads and torch version.",
       "Most were measured on the 2-core development machine while other work shared it: wall times there are",
       "pessimistic, and the sections say so where it mattered.", ""]
out += [f"- [{p.stem[8:]}](#{p.stem[8:]})" for p in parts] + [""]
for p in parts:
    text = p.read_text().strip()
    out += [f'<a id="{p.stem[8:]}"></a>', "", text, ""]
(here/"RESULTS.md").write_text("\n".join(out))
print(f"bench/RESULTS.md: {len(parts)} sections")
