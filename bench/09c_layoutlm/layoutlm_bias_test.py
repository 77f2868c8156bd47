"""Lesson 09c: the tagger with LayoutLMv2's relative 2-D attention bias, as the lesson builds it (`LayoutLMConfig(spatial_bias=True)`,
boxes only through the bias, `use_layout=False`), against the text-only twin; then the test templates, once.

What was chosen before this script, on the lesson's 8 validation templates only (`layoutlm_spatial_bias.py`, its own
implementation of the bias from the top-left corners): the bias without box vectors over the bias with them, and the
longest run tried, 2,400 steps, over 600 and 1,200 (validation F1 rose at each). The lesson's code follows
`transformers`' LayoutLMv3 for x (left edges) and offers the top or the bottom edges for y (`bias_y_edge`;
LayoutLMv3 takes the bottom), so this script first chooses the edge on validation with the lesson's code, then
measures the rest with the chosen edge before the test templates are scored.

Parts (one thread each; `nice -n 10` when other work shares the machine):
  quick   the lesson's quick recipe (600 steps of 16, lr 5e-3, no dropout) for the 2-D bias tagger: seeds 0-2 on the
          lesson's template draw with top and with bottom edges (validation only; the edge with the higher mean
          validation F1 is chosen), then, with the chosen edge, seed 0 on two other draws (10 and 11, whose held-out
          templates no choice was made on, with the text-only twin beside it): the spread behind the lesson's checks.
  slow    the lesson's draw, 2,400 steps, the 2-D bias tagger and the text-only twin, seeds 0 and 1: each keeps the
          step with the best validation F1, then the lesson's 8 test templates (96 invoices) are scored once, with a
          bootstrap interval over invoices. The target of the LayoutLM issue: entity F1 >= 0.95 on held-out templates.
  table   rewrite the RESULTS.md section from the JSON.

Usage: python bench/09c_layoutlm/layoutlm_bias_test.py quick|slow|table
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np
import torch
from llmcourse.core import seed_everything
from llmcourse.layoutlm import (LayoutLMConfig, LayoutLMTagger, bootstrap_f1, entity_counts, entity_f1, init_box_tables, predict_tags,
                                train_tagger, word_tags)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import record, write_section, machine_line
from lesson_data import lesson_data, per_field

NAME, TARGET = "layoutlm_bias_test", 0.95
OUT = Path(__file__).with_name(NAME + ".json")
VARIANTS = {"2-D bias, top edges": (True, "top"), "2-D bias, bottom edges": (True, "bottom"), "text only": (False, "top")}  # name -> (spatial bias, y edge)

def tagger(name):
    spatial, edge = VARIANTS[name]
    return init_box_tables(LayoutLMTagger(LayoutLMConfig.tiny(dropout=0.0, attn_dropout=0.0, spatial_bias=spatial, bias_y_edge=edge), use_layout=False))

def chosen_edge(quick):
    "The edge with the higher mean validation F1 on the lesson's draw, seeds 0-2."
    mean = {e: np.mean([r["valid_f1"] for r in quick if r["variant"] == f"2-D bias, {e} edges" and r["draw"] == 1] or [-1]) for e in ("top", "bottom")}
    return max(mean, key=mean.get)

def run(name, seed, steps, enc, draw, score_test):
    seed_everything(seed)
    c0 = time.process_time()
    m, h = train_tagger(tagger(name), enc["train"], enc["valid"], steps=steps, lr=5e-3, seed=seed)
    at, f1s = h.series("valid_f1")
    row = dict(variant=name, seed=seed, steps=steps, draw=draw, valid_f1=max(f1s), best_step=int(at[int(np.argmax(f1s))]), valid_curve=list(f1s),
               cpu_s=time.process_time() - c0)
    if score_test:
        true = [word_tags(e) for e in enc["test"]]; pred = predict_tags(m, enc["test"])
        f1, lo, hi = bootstrap_f1(entity_counts(true, pred))
        row |= dict(test_f1=f1, test_low=lo, test_high=hi, test_docs=len(true), test_per_field=per_field(true, pred))
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "valid_curve"}, flush=True)
    return row

def load():
    return json.loads(OUT.read_text())["results"] if OUT.exists() else dict(quick=[], slow=[])

def save(res):
    record(__file__, NAME, res); table(res)

def table(res):
    L = [f"The lesson's 2-D bias tagger (`spatial_bias=True`, boxes only through the bias) and its text-only twin; {machine_line()}.", ""]
    if res["quick"]:
        L += ["Quick recipe (600 steps), the spread behind the lesson's checks. Draw 1 is the lesson's (validation only); draws 10 and 11 are "
              "fresh template draws whose held-out templates no choice was made on.", "",
              "| variant | draw | seed | best validation F1 (step) | held-out F1 [95% interval] | train CPU s |", "| --- | --- | --- | --- | --- | --- |"]
        for r in sorted(res["quick"], key=lambda r: (r["variant"], r["draw"], r["seed"])):
            held = f"{r['test_f1']:.3f} [{r['test_low']:.3f}, {r['test_high']:.3f}]" if "test_f1" in r else "not scored"
            L.append(f"| {r['variant']} | {r['draw']} | {r['seed']} | {r['valid_f1']:.3f} ({r['best_step']}) | {held} | {r['cpu_s']:.0f} |")
        edge = chosen_edge(res["quick"])
        for e in ("top", "bottom"):
            b = [r["valid_f1"] for r in res["quick"] if r["variant"] == f"2-D bias, {e} edges"]
            if b: L += ["", f"2-D bias, {e} edges, best validation F1 over {len(b)} runs: {min(b):.3f} to {max(b):.3f} (mean {np.mean(b):.3f})."]
        L += ["", f"Chosen on the lesson's validation templates (higher mean over seeds 0-2): {edge} edges."]
        gaps = [r["test_f1"] - t["test_f1"] for r in res["quick"] for t in res["quick"] if r["variant"].startswith("2-D bias") and t["variant"] == "text only"
                and "test_f1" in r and "test_f1" in t and (r["draw"], r["seed"]) == (t["draw"], t["seed"])]
        if gaps: L += [f"Held-out gain of the bias over text only on the fresh draws: {', '.join(f'{g:+.3f}' for g in gaps)}.", ""]
    if res["slow"]:
        L += ["Slow run: the lesson's draw, 2,400 steps, the step with the best validation F1 kept; the lesson's 8 test templates "
              "(96 invoices) scored once per model, after every choice above.", "",
              "| variant | seed | best validation F1 (step) | test entity F1 [95% interval] | INVOICE_NO | DATE | TOTAL | train CPU s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in sorted(res["slow"], key=lambda r: (r["variant"], r["seed"])):
            pf = r["test_per_field"]
            L.append(f"| {r['variant']} | {r['seed']} | {r['valid_f1']:.3f} ({r['best_step']}) | {r['test_f1']:.3f} [{r['test_low']:.3f}, {r['test_high']:.3f}] "
                     f"| {pf['INVOICE_NO']:.3f} | {pf['DATE']:.3f} | {pf['TOTAL']:.3f} | {r['cpu_s']:.0f} |")
        b = [r["test_f1"] for r in res["slow"] if r["variant"].startswith("2-D bias")]
        L += ["", f"Target: test entity F1 >= {TARGET} with layout. 2-D bias over {len(b)} seeds: mean {np.mean(b):.3f} ({min(b):.3f} to {max(b):.3f}); "
              + ("met by every seed." if min(b) >= TARGET else "met by the mean only." if np.mean(b) >= TARGET else "missed.")]
    write_section(__file__, NAME, "\n".join(L))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0]); ap.add_argument("part", choices=["quick", "slow", "table"])
    a = ap.parse_args()
    res = load()
    if a.part == "table": return table(res)
    torch.set_num_threads(1)
    if a.part == "quick":
        done = {(r["variant"], r["draw"], r["seed"]) for r in res["quick"]}
        _, enc = lesson_data(1)
        for seed in (0, 1, 2):
            for name in ("2-D bias, top edges", "2-D bias, bottom edges"):
                if (name, 1, seed) not in done: res["quick"].append(run(name, seed, 600, enc, 1, False)); save(res)
        bias = f"2-D bias, {chosen_edge(res['quick'])} edges"
        for draw in (10, 11):
            _, enc = lesson_data(draw, test=True)
            for name in (bias, "text only"):
                if (name, draw, 0) not in done: res["quick"].append(run(name, 0, 600, enc, draw, True)); save(res)
    else:
        res["slow"] = []
        _, enc = lesson_data(1, test=True)
        for seed in (0, 1):
            for name in (f"2-D bias, {chosen_edge(res['quick'])} edges", "text only"): res["slow"].append(run(name, seed, 2400, enc, 1, True)); save(res)

if __name__ == "__main__": main()
