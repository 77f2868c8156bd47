"""Lesson 05: the spread over seeds of the copy/reverse training run, so that the lesson's check has a measured margin.

Trains the lesson's model and recipe (`TransformerConfig.tiny(d_ff=128, max_len=16)`, batch 128, Noam x0.5, warm-up 200,
label smoothing 0.1, at most 2,400 steps, stop at 100% on the 1,000 validation pairs) once per seed, one thread, and
scores the 1,000 held-out inputs per task once at the end of each run. The seed sets the initial weights and the batch
order; the data are the lesson's.

    python bench/05_transformer/copy_reverse_seeds.py [--seeds 0,1,2,3,4] [--max-steps 2400] [--reuse copy_reverse_seeds_2400.json]
Writes bench/05_transformer/copy_reverse_seeds_<max-steps>.json and its section of RESULTS.md.

`--reuse` takes over the rows of an earlier run (a JSON this script wrote) whose training stopped on validation before
`--max-steps`: neither the Noam schedule nor the batch order depends on the cap, so such a run repeats step for step
under a higher cap. The table marks them.
"""
import argparse, json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness
from llmcourse.core import seed_everything
from llmcourse.data import toy_split
from llmcourse.transformer import CharVocab, Transformer, TransformerConfig, exact_match, toy_examples, train_seq2seq

def run(seed:int, max_steps:int) -> dict:
    tasks = ("copy", "reverse")
    vocab = CharVocab(extra_specials=[f"<{t}>" for t in tasks])
    train = [ex for ex in toy_examples(tasks, 20_000, seed=0) if all(toy_split(t, ex[1]) == "train" for t in tasks)]
    valid = toy_examples(tasks, 500, seed=1)
    test = {t: toy_examples((t,), 1000, split="heldout", seed=0) for t in tasks}
    seed_everything(seed)
    model = Transformer(TransformerConfig.tiny(src_vocab_size=len(vocab), tgt_vocab_size=len(vocab), d_ff=128, max_len=16))
    t0, c0 = time.perf_counter(), time.process_time()
    hist = train_seq2seq(model, train, valid, vocab, batch_size=128, max_steps=max_steps, lr_factor=0.5, eval_every=200, seed=seed)
    out = dict(seed=seed, steps=hist.rows[-1]["step"], valid_exact=hist.last("valid_exact"),
               train_s=round(time.perf_counter() - t0, 1), train_cpu_s=round(time.process_time() - c0, 1))
    out.update({t: exact_match(model, ex, vocab) for t, ex in test.items()})
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--max-steps", type=int, default=2400, help="the lesson's cap")
    ap.add_argument("--reuse", default=None, help="a JSON of this script in bench/05_transformer/ whose early-stopped rows are taken over")
    a = ap.parse_args()
    torch.set_num_threads(1)
    old = {}
    if a.reuse:
        prev = json.loads((Path(__file__).parent/a.reuse).read_text())["results"]
        old = {r["seed"]: dict(r, reused=a.reuse) for r in prev["runs"] if r["valid_exact"] == 1.0 and r["steps"] < a.max_steps}
    rows = []
    for s in [int(x) for x in a.seeds.split(",")]:
        rows.append(old.get(s) or run(s, a.max_steps)); print(rows[-1], flush=True)
    summary = {t: dict(min=min(r[t] for r in rows), mean=sum(r[t] for r in rows) / len(rows), max=max(r[t] for r in rows))
               for t in ("copy", "reverse")}
    name = f"copy_reverse_seeds_{a.max_steps}"
    harness.record(__file__, name, dict(runs=rows, summary=summary, max_steps=a.max_steps))
    lines = [f"## Copy and reverse over seeds, at most {a.max_steps:,} steps (`copy_reverse_seeds.py`)", "",
             f"Command: `{harness.command()}`, commit {harness.commit()}.  ", f"Machine: {harness.machine_line()}.", "",
             "The lesson's recipe once per seed (initial weights and batch order); held-out exact-sequence accuracy on "
             "1,000 inputs per task never seen in training, scored once at the end of each run. Training stops when all 1,000 "
             "validation pairs come out right, or at the cap." + (f" Rows marked * are taken from `{a.reuse}`: they stopped "
             "on validation before this cap, and neither the schedule nor the batch order depends on the cap." if old else ""), "",
             "| seed | steps | validation | copy (held-out) | reverse (held-out) | train wall s | train CPU s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']}{'*' if 'reused' in r else ''} | {r['steps']} | {r['valid_exact']:.3f} | {r['copy']:.3f} | {r['reverse']:.3f} | {r['train_s']} | {r['train_cpu_s']} |" for r in rows]
    lines += ["", " ".join(f"{t}: min {v['min']:.3f}, mean {v['mean']:.4f}, max {v['max']:.3f}." for t, v in summary.items())]
    harness.write_section(__file__, name, "\n".join(lines))

if __name__ == "__main__": main()
