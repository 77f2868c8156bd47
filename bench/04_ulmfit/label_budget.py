"""Lesson 04: SST-2 test accuracy against the number of labelled training sentences, with and without LM pretraining.

Stages 1 and 2 of ULMFiT give the pretrained encoder. By default they run as in the lesson's `slow` curve cell:
`ULMFiTConfig.tiny()` with stage 2 trained for eight epochs (`--lm2-epochs`) on all SST-2 training sentences without
labels; `--config small` takes the larger `small()` model instead. `label_budget_curve` then trains classifiers for
each budget from that encoder and from random weights, over seeds, chooses the stage-3 recipe on the SST-2 dev set
(all 872 sentences) and scores the chosen classifiers once on the SST-2 test set (all 1,821). One torch thread.

    python bench/04_ulmfit/label_budget.py [--config tiny] [--lm2-epochs 8] [--budgets 100,500,2000,all] [--seeds 0,1,2]
    python bench/04_ulmfit/label_budget.py --quick   # the notebook's quick-mode curve: `tiny()` as it is, 300 dev/test
Writes bench/04_ulmfit/label_budget_<config>.json (or label_budget_quick.json) and its section of RESULTS.md.
"""
import argparse, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness
from llmcourse.core import cache_dir
from llmcourse.ulmfit import ULMFiTConfig, finetune_target_lm, label_budget_curve, label_curve_summary, pretrain_general_lm, sst2_frame

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="tiny", choices=["tiny", "small"])
    ap.add_argument("--lm2-epochs", type=int, default=8, help="stage-2 epochs after the frozen one")
    ap.add_argument("--budgets", default="100,500,2000,all"); ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--quick", action="store_true", help="the notebook's quick-mode curve (tiny() unchanged, budgets 100,1000)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.quick: a.config, a.budgets = "tiny", "100,1000"
    cfg = ULMFiTConfig.tiny() if a.quick else getattr(ULMFiTConfig, a.config)(lm2_epochs=a.lm2_epochs, n_eval=None, n_target=None)
    name = "label_budget_" + ("quick" if a.quick else a.config)
    path = cache_dir("ulmfit", name)
    t0 = time.process_time()
    general = pretrain_general_lm(cfg, path=path)
    target = finetune_target_lm(cfg, start="general_lm", path=path)
    lm_cpu = time.process_time() - t0
    lm = dict(general_ppl=[float(v[-1]) for v in general.recorder.values], target_ppl=[float(v[-1]) for v in target.recorder.values],
              cpu_s=round(lm_cpu), vocab=len(target.dls.vocab))
    print(lm, flush=True)
    budgets = [None if b == "all" else int(b) for b in a.budgets.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    dev, test = sst2_frame("dev", cfg.n_eval, cfg.seed), sst2_frame("test", cfg.n_eval, cfg.seed)
    t0 = time.process_time()
    curve = label_budget_curve(cfg, target.dls.vocab, dev, test, budgets=budgets, seeds=seeds, path=path)
    clas_cpu = time.process_time() - t0
    print(curve, flush=True)
    summary = label_curve_summary(curve)
    recipe = curve.groupby(["labels", "pretrained"]).recipe.first().unstack("pretrained")
    spread = curve.groupby(["labels", "pretrained"]).test.agg(["min", "max"]).unstack("pretrained")
    tried = curve.attrs["tried"].groupby(["labels", "pretrained", "recipe"]).dev.agg(["mean", "min", "max"])
    harness.record(__file__, name, dict(config=cfg.__dict__, lm=lm, rows=curve.to_dict("records"), tried=curve.attrs["tried"].to_dict("records"),
                                                              classifier_cpu_s=round(clas_cpu), threads=torch.get_num_threads()))
    lines = [f"## Accuracy against the number of labels, `ULMFiTConfig.{a.config}()`{' as in quick mode' if a.quick else ''} (`label_budget.py`)", "",
             f"Command: `{harness.command()}`, commit {harness.commit()}.  ", f"Machine: {harness.machine_line()}.", "",
             f"Language models: stage 1 (tiny Shakespeare) valid perplexity {lm['general_ppl'][-1]:.1f}, stage 2 (SST-2 training "
             f"sentences, no labels) {lm['target_ppl'][-1]:.1f}, {lm['cpu_s']} s CPU; the classifiers took {round(clas_cpu)} s CPU.", "",
             f"SST-2 test accuracy ({len(test):,} sentences, scored once), mean over seeds {seeds} ± standard error; the stage-3 "
             f"recipe was chosen on the dev set ({len(dev)} sentences) for each row and variant. Gain: pretrained minus random, "
             "paired by seed (same sentences).", "",
             "| labelled sentences | pretrained LM | random weights | gain | recipe (pretrained / random) |", "|---|---|---|---|---|"]
    for n, r in summary.iterrows():
        lines.append(f"| {n:,} | {r.pretrained:.3f} ± {r.pretrained_se:.3f} | {r.random:.3f} ± {r.random_se:.3f} | "
                     f"{r.gain:+.3f} ± {r.gain_se:.3f} (min {r.gain_min:+.3f}, max {r.gain_max:+.3f}) | {recipe.loc[n, True]} / {recipe.loc[n, False]} |")
    lines += ["", "Per seed, test accuracy min-max: " + "; ".join(
        f"{n:,} {'pretrained' if p else 'random'} {spread.loc[n, ('min', p)]:.3f}-{spread.loc[n, ('max', p)]:.3f}"
        for n in summary.index for p in (True, False)) + "."]
    lines += ["", "Dev accuracy of every recipe tried (mean, min-max over seeds); the chosen one is in the table above:", "",
              "| labelled sentences | pretrained | recipe | dev mean | dev min-max |", "|---|---|---|---|---|"]
    lines += [f"| {n:,} | {p} | {r} | {v['mean']:.3f} | {v['min']:.3f}-{v['max']:.3f} |" for (n, p, r), v in tried.iterrows()]
    harness.write_section(__file__, name, "\n".join(lines))

if __name__ == "__main__": main()
