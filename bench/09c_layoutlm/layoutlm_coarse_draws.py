"""Lesson 09c: do coarse boxes (coordinates floored to multiples of 100) beat text alone over template draws and
seeds, or was layoutlm_minilm_layout's one-draw gain luck? Scored on validation templates only: for each template
draw the 816 templates are split as in the lesson (800 train, 8 validation, 8 test) and the test templates are never
rendered or scored. Draw 1 is the lesson's own; draws 2 and 3 are new template sets made the same way
(`lesson_data(draw)`). Each (draw, seed) trains the layout model and its text-only twin with the same seed, the same
word pieces and the same batches, so the comparison is paired.

Recipes (`model:steps`):
- minilm:N: MiniLM cut to 2 blocks (`layoutlm_from_bert`), token table frozen, no dropout, batches of 4, peak lr
  1e-3, validation every 40 steps (the layoutlm_init / layoutlm_minilm_layout `base` recipe, N steps);
- tiny:N: the lesson's tiny model from scratch (sinusoid box tables, no dropout), batches of 16, peak lr 5e-3,
  validation every 100 steps (the lesson's recipe at N steps; the lesson uses 600).
Both through the lesson's `train_tagger` (best validation step kept); the seed sets the new weights and the batches.

Usage: python bench/09c_layoutlm/layoutlm_coarse_draws.py RECIPE [RECIPE ...] [--draws 1,2,3] [--seeds 0,1]
       python bench/09c_layoutlm/layoutlm_coarse_draws.py --table      (rewrite RESULTS.md from the JSON)
       (1 thread: about 60 CPU s per MiniLM run of 240 steps, 45 per tiny run of 600 steps, 4 runs per draw and seed)
Recipes run one after the other, each over all draws and seeds; each finished run is merged into layoutlm_coarse_draws.json and the RESULTS.md section is rewritten from all rows.
"""
import argparse, json, pickle, sys, time
from pathlib import Path
import numpy as np
import torch
from llmcourse.core import cache_dir, seed_everything
from llmcourse.data import minilm_dir
from llmcourse.bert import bert_from_pretrained
from llmcourse.layoutlm import LayoutLMConfig, LayoutLMTagger, entity_f1, init_box_tables, layoutlm_from_bert, predict_tags, train_tagger, word_tags
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import record, write_section, machine_line
from lesson_data import lesson_data, per_field

NAME, QUANTUM = "layoutlm_coarse_draws", 100
ap = argparse.ArgumentParser()
ap.add_argument("recipes", nargs="*", help="model:steps, model in minilm, tiny")
ap.add_argument("--draws", default="1,2,3"); ap.add_argument("--seeds", default="0,1"); ap.add_argument("--table", action="store_true")
args = ap.parse_args()
recipes = [(r.split(":")[0], int(r.split(":")[1])) for r in args.recipes]
if bad := [m for m, _ in recipes if m not in ("minilm", "tiny")]: sys.exit(f"unknown models {bad}; use minilm:STEPS or tiny:STEPS")
draws, seeds = [int(d) for d in args.draws.split(",")], [int(s) for s in args.seeds.split(",")]
torch.set_num_threads(1)

def coarse(encoded, q=QUANTUM):
    "Documents whose box coordinates are floored to multiples of `q`."
    return [e | dict(bbox=[[c // q * q for c in b] for b in e["bbox"]]) for e in encoded]

def run(model, steps, draw, seed, layout, data, minilm):
    seed_everything(seed)
    if model == "minilm":
        m = layoutlm_from_bert(minilm, n_layers=2, use_layout=layout, dropout=0.0, attn_dropout=0.0)
        m.layoutlm.bert.embeddings.word.weight.requires_grad_(False)  # the token table stays as MiniLM learned it
        opts = dict(batch_size=4, lr=1e-3, eval_every=40)
    else:
        m = init_box_tables(LayoutLMTagger(LayoutLMConfig.tiny(dropout=0.0, attn_dropout=0.0), use_layout=layout))
        opts = dict(batch_size=16, lr=5e-3, eval_every=100)
    tr, va = coarse(data["train"]), coarse(data["valid"])  # the text-only twin ignores boxes, so this changes nothing for it
    true = [word_tags(e) for e in va]
    c0 = time.process_time()
    m, h = train_tagger(m, tr, va, steps=steps, seed=seed, **opts)
    pred = predict_tags(m, va)
    steps_seen, curve = h.series("valid_f1")
    row = dict(model=model, steps=steps, draw=draw, seed=seed, layout=layout, quantum=QUANTUM, **opts,
               valid_f1=entity_f1(true, pred), last_f1=curve[-1], best_step=int(steps_seen[int(np.argmax(curve))]),
               valid_curve=list(curve), per_field=per_field(true, pred), cpu_s=time.process_time() - c0)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "valid_curve"}, flush=True)
    return row

out = Path(__file__).with_name(NAME + ".json")
key = lambda r: (r["model"], r["steps"], r["draw"], r["seed"], r["layout"])
rows = {key(r): r for r in (json.loads(out.read_text())["results"]["rows"] if out.exists() else [])}

def write_table():
    lines = [f"Coarse boxes (coordinates floored to multiples of {QUANTUM}) against text only, paired: the same template draw, seed, "
             f"word pieces and batches for both; scored on the 8 validation templates of each draw (96 invoices; test templates "
             f"never rendered); {machine_line()}.", "",
             "| recipe | pairs (draws x seeds) | layout F1 (mean, min-max) | text F1 (mean, min-max) | paired gain (mean ± s.e.) | gain min-max | pairs won | gain at last step (mean, min-max) | train CPU s per run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    per_pair = []
    for model, steps in sorted({(r["model"], r["steps"]) for r in rows.values()}):
        pairs = sorted({(r["draw"], r["seed"]) for r in rows.values() if (r["model"], r["steps"]) == (model, steps)})
        pairs = [p for p in pairs if all((model, steps, *p, l) in rows for l in (True, False))]
        if not pairs: continue
        lay = np.array([rows[(model, steps, *p, True)]["valid_f1"] for p in pairs]); txt = np.array([rows[(model, steps, *p, False)]["valid_f1"] for p in pairs])
        gain = lay - txt
        last = np.array([rows[(model, steps, *p, True)]["last_f1"] - rows[(model, steps, *p, False)]["last_f1"] for p in pairs])
        cpu = np.mean([rows[(model, steps, *p, l)]["cpu_s"] for p in pairs for l in (True, False)])
        se = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else float("nan")
        ds, ss = sorted({d for d, _ in pairs}), sorted({s for _, s in pairs})
        lines.append(f"| {model} {steps} steps | {len(pairs)} ({len(ds)} x {len(ss)}) | {lay.mean():.3f} ({lay.min():.3f}-{lay.max():.3f}) | "
                     f"{txt.mean():.3f} ({txt.min():.3f}-{txt.max():.3f}) | {gain.mean():+.3f} ± {se:.3f} | {gain.min():+.3f} to {gain.max():+.3f} | "
                     f"{(gain > 0).sum()} of {len(gain)} | {last.mean():+.3f} ({last.min():+.3f} to {last.max():+.3f}) | {cpu:.0f} |")
        per_pair.append((f"{model} {steps}", pairs, lay, txt))
    lines += ["", "Per pair (draw, seed): layout / text validation F1."]
    for name, pairs, lay, txt in per_pair:
        lines.append(f"- {name}: " + "; ".join(f"({d}, {s}) {a:.3f} / {b:.3f}" for (d, s), a, b in zip(pairs, lay, txt)))
    lines += ["", "minilm: MiniLM cut to 2 blocks, token table frozen, batches of 4 at peak lr 1e-3; tiny: the lesson's tiny model "
              "from scratch, batches of 16 at 5e-3. F1 is that of the best validation step (as `train_tagger` keeps it), on the same "
              "validation templates for both twins; the last-step column is the gain without that choice. s.e.: standard error "
              "of the mean paired gain over pairs (pairs that share a draw are not independent, so it is optimistic); draw 1 is the "
              "lesson's template draw. CPU seconds include the validation passes."]
    write_section(__file__, NAME, "\n".join(lines))

def draw_data(draw, cache={}):
    "The encoded train and valid documents of template draw `draw`, kept on disk under `cache_dir` (rendering takes about a minute; delete the file if the generator changes)."
    if draw not in cache:
        path = cache_dir("bench-09c")/f"lesson_data_draw{draw}.pkl"
        if path.exists(): cache[draw] = pickle.loads(path.read_bytes())
        else:
            t0 = time.time(); cache[draw] = lesson_data(draw)[1]; path.write_bytes(pickle.dumps(cache[draw]))
            print(f"draw {draw}: data in {time.time() - t0:.0f} s", flush=True)
    return cache[draw]

if recipes:
    minilm = bert_from_pretrained(minilm_dir()) if any(m == "minilm" for m, _ in recipes) else None
    for model, steps in recipes:  # one recipe over all draws and seeds before the next
        for draw in draws:
            for seed in seeds:
                for layout in (True, False):
                    if (model, steps, draw, seed, layout) in rows: continue  # already measured
                    r = run(model, steps, draw, seed, layout, draw_data(draw), minilm)
                    rows[key(r)] = r
                    record(__file__, NAME, dict(rows=list(rows.values())))
                    write_table()
write_table()
