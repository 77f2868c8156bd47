"""Lesson 08's long run as a script: the tiny T5 on reverse/sort/add + SST-2 with the recipe of the lesson's slow cell,
validation exact match during training (the data the recipe was chosen on) and the test examples scored once.

    python bench/08_t5/t5_slow.py --threads 1          (20,000 steps: about an hour of one CPU core)

With `--no-test` the run scores validation only and keeps the trained weights in LLMCOURSE_HOME; `--score-saved`
later scores the test examples once with those weights (so a length can be chosen on validation before any test).

Test: 1,000 fresh held-out inputs per generated task (seed 1, none among the validation inputs) and SST-2's labelled
test split, each with a 95% bootstrap interval. The recipe's search is in bench/archive/08_t5/.
"""
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--steps", type=int, default=20_000)  # chosen on validation over 12,000 (t5_slow_20k against t5_slow)
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--warmup", type=int, default=200)
p.add_argument("--eval-every", type=int, default=2000)
p.add_argument("--rates", default="reverse=.2,sort=.15,add=.45,sst2=.2", help="mixing rates")
p.add_argument("--threads", type=int, default=1)
p.add_argument("--name", default="t5_slow", help="the JSON file and RESULTS.md section to write (another name keeps the lesson's record)")
p.add_argument("--no-test", action="store_true", help="score validation only; keep the weights for --score-saved")
p.add_argument("--score-saved", action="store_true", help="no training: score the test examples once with the weights a --no-test run of --name kept")
a = p.parse_args()

import torch
torch.set_num_threads(a.threads)
from llmcourse.core import cache_dir, default_device, seed_everything
from llmcourse.bert import bootstrap_accuracy
from llmcourse.t5 import (GENERATED_TASKS, T5Size, build_t5, exact_match_by_task, final_test_examples, generated_examples,
                          sst2_examples, train_t5, train_t5_tokenizer)

TASKS = tuple(GENERATED_TASKS)
device = default_device()
sst_train, gen_train = sst2_examples("train"), generated_examples(20_000)
tok = train_t5_tokenizer([t for _, i, o in sst_train + gen_train[::10] for t in (i, o)], vocab_size=1000, extra_ids=20)
train_by_task = {t: [e for e in gen_train if e[0] == t] for t in TASKS} | {"sst2": sst_train}
rates = {t: float(r) for t, r in (kv.split("=") for kv in a.rates.split(","))}
valid = generated_examples(200, "heldout") + sst2_examples("dev", 200)
seed_everything(0)
model = build_t5(T5Size.tiny(), tok).to(device)
SAVED = cache_dir("08_t5")/f"{a.name}.pt"
if a.score_saved:  # the run's record stays as its --no-test run wrote it; only the test is added
    import json
    model.load_state_dict(torch.load(SAVED, map_location=device))
    res = json.loads((Path(__file__).parent/f"{a.name}.json").read_text())["results"]
    if res.get("test"): sys.exit(f"{a.name} has scored the test examples already; they are scored once.")
    wall, cpu, curve = res["train_wall_seconds"], res["train_cpu_seconds"], res["validation_curve"]
else:
    t0, c0 = time.perf_counter(), time.process_time()
    hist = train_t5(model, tok, train_by_task, rates, valid, steps=a.steps, batch_size=a.batch_size, lr=a.lr, warmup=a.warmup,
                    eval_every=a.eval_every, verbose=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    curve = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k == "step" or k.startswith("em_")}
             for r in hist.rows if any(k.startswith("em_") for k in r)]
    res = dict(settings=vars(a), rates=rates, device=str(device), train_wall_seconds=round(wall, 1), train_cpu_seconds=round(cpu, 1),
               final_loss=round(hist.last("loss"), 4), validation_curve=curve, test={})
    if a.no_test: torch.save(model.state_dict(), SAVED)
if not a.no_test:
    right = exact_match_by_task(model, tok, final_test_examples(valid), per_example=True)
    res["test"] = {t: dict(zip(("exact_match", "low", "high"), (round(x, 4) for x in bootstrap_accuracy(r))), n=len(r)) for t, r in right.items()}
test = res["test"]
print(res)
COMMIT = harness.commit()  # before record() rewrites the tracked JSON, which would read as -dirty
harness.record(__file__, a.name, res)
rows = "\n".join(f"| {t} | {v['n']} | **{v['exact_match']:.1%}** | {v['low']:.1%} to {v['high']:.1%} |" for t, v in test.items())
vrows = "\n".join(f"| {r['step']} | " + " | ".join(f"{r.get('em_' + t, float('nan')):.1%}" for t in (*TASKS, "sst2")) + " |" for r in curve)
LESSON = all(getattr(a, k) == p.get_default(k) for k in ("steps", "batch_size", "lr", "warmup", "rates"))
harness.write_section(__file__, a.name, f"""## The long run ({"the lesson's `slow` cell" if LESSON else "not the lesson's recipe"}, `--name {a.name}`: {a.steps:,} steps)

`{harness.command()}` at commit {COMMIT}; {harness.machine_line()}.

`T5Size.tiny()`, {a.steps:,} steps of {a.batch_size}, AdamW, peak lr {a.lr:g}, {a.warmup} warm-up steps and linear decay,
mixing rates {rates}. Training: {wall:.0f} s wall, {cpu:.0f} s CPU.{" Trained by the same command with `--no-test` instead of `--score-saved`; the test examples were scored afterwards, once." if a.score_saved else ""}

Validation exact match during training (200 examples per generated task, 200 SST-2 dev sentences; the recipe was chosen
on these):

| step | reverse | sort | add | SST-2 |
|---|---|---|---|---|
{vrows}

""" + (f"""Test, scored once (fresh held-out inputs, none among the validation inputs; SST-2's labelled test split):

| task | examples | exact match | 95% bootstrap interval |
|---|---|---|---|
{rows}""" if test else "Test not scored (`--no-test`): the weights wait for a choice made on validation."))
