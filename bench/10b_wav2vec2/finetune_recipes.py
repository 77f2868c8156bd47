"""Lesson 10b: fine-tuning the way the wav2vec 2.0 paper fine-tunes a pretrained model, then the test table.

Step 1 (`run`, validation only): lucas' fold, 50 labelled clips per speaker, `CTCRecipe.slow()` stretched to 1000 steps,
the fold's 3000-step pretraining (`pretrain-fold`, cached), greedy decoding at steps 250/500/750/1000. One change at a
time against the base recipe, each from the pretrained start and, where the change applies, from scratch:
  freeze   the conv feature encoder frozen (Baevski et al. 2020, section 4: it is not trained during fine-tuning)
  head150  only the CTC head trained for the first 150 steps, then everything (the paper trains only the output
           classifier for the first updates)
  mask     time masking during fine-tuning, p=0.05 and spans of 10 frames (the paper's fine-tuning masking; our
           frames are 20 ms, as the paper's, so the span stays 10)
  lowlr    the pretrained parts at 0.3x the head's peak learning rate
The recipe with the lowest pretrained validation WER (at its best checkpoint) is then frozen by hand as `CHOSEN`.

Step 2: `run CHOSEN <init> --budget 50` and `--budget 500` for both starts (the `base` rows of step 1 came from
`longer_finetune.py`, so with `CHOSEN = "base"` the 50-clip runs are made here too), `beam` (beam-8 decoding of the kept checkpoints), `pretrain-final` (3000
steps on the four training speakers), `test` (stopping step and decoding chosen on validation with
`choose_stopping`, then jackson and theo scored once). Every heavy part runs on its own under `nice -n 10`:

    nice -n 10 python bench/10b_wav2vec2/finetune_recipes.py pretrain-fold
    nice -n 10 python bench/10b_wav2vec2/finetune_recipes.py run freeze pretrained [--budget 50]
    nice -n 10 python bench/10b_wav2vec2/finetune_recipes.py beam
    nice -n 10 python bench/10b_wav2vec2/finetune_recipes.py pretrain-final
    nice -n 10 python bench/10b_wav2vec2/finetune_recipes.py test
    nice -n 10 python bench/10b_wav2vec2/finetune_recipes.py whisper   (lesson 10a's Whisper on the same clips, steps and test utterances)
"""
import argparse, contextlib, json, sys, time
from dataclasses import asdict, replace
from pathlib import Path
from unittest import mock
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import numpy as np
import torch
from llmcourse.core import cache_dir
from llmcourse.whisper import edit_distance
from llmcourse.whisper_digits import TEST_SPEAKERS, digit_split, wer_interval
from llmcourse.wav2vec2 import CTCVocab, Wav2Vec2, Wav2Vec2Config, transcribe_ctc
from llmcourse.wav2vec2_pretraining import (CTCRecipe, PretrainRecipe, Wav2Vec2Pretraining, choose_stopping, count_parameters, digit_draw,
                                            digit_wave_set, finetune_ctc, pretrain_wav2vec2)

HERE, CACHE = Path(__file__).resolve().parent, cache_dir("10b_wav2vec2")
HELD_OUT, STEPS, EVAL_AT, SEED = "lucas", 1000, [250, 500, 750, 1000], 0
CFG = Wav2Vec2Config.digits()
PRE = replace(PretrainRecipe.slow(), steps=3000, warmup=300)
BASE = replace(CTCRecipe.slow(), steps=STEPS)
RECIPES = {  # name -> (CTCRecipe, steps with only the head trained, peak-lr factor of everything but the head, applies to scratch)
    "base": (BASE, 0, 1.0, True),
    "freeze": (replace(BASE, freeze_features=True), 0, 1.0, False),  # a random conv encoder cannot be frozen usefully
    "head150": (BASE, 150, 1.0, True),
    "mask": (replace(BASE, mask_prob=0.05, mask_length=10), 0, 1.0, True),
    "lowlr": (BASE, 0, 0.3, False),  # nothing is pretrained in a scratch start
}
CHOSEN = "base"  # frozen after step 1: no change beat training everything at one rate (freeze 62.2%, lowlr 71.5%, head150 87.2%, mask 100% at best)
def recipe_for(init:str) -> str:
    "The frozen recipe of a start: `CHOSEN`, or `base` for a scratch start where `CHOSEN`'s change does not apply."
    return CHOSEN if init == "pretrained" or RECIPES[CHOSEN][3] else "base"

def step2_rows(rows): return [x for x in rows if x["recipe"] == recipe_for(x["init"])]
BEAM_AT = [500, 750, 1000]  # checkpoints beam-8 decoding is tried at in step 2
torch.set_num_threads(1)
VAL = HERE/"finetune_recipes.json"

def log(line): print(line, flush=True)

@contextlib.contextmanager
def recipe_hooks(model:Wav2Vec2, head_only:int, lr_factor:float):
    "What `finetune_ctc` has no option for: no gradients outside the CTC head for the first `head_only` steps; `lr_factor` x the peak lr outside the head."
    head = {id(p) for p in model.ctc_head.parameters()}
    steps, handles = [0], []
    if head_only:
        handles.append(model.register_forward_pre_hook(lambda m, a: steps.__setitem__(0, steps[0] + m.training)))  # training forwards = steps
        def drop(p):
            if steps[0] <= head_only: p.grad = None  # AdamW skips a parameter without a gradient: no update, no state, no decay
        handles += [p.register_post_accumulate_grad_hook(drop) for p in model.parameters() if id(p) not in head]
    AdamW = torch.optim.AdamW
    class SplitAdamW(AdamW):
        def __init__(self, params, lr, **kw):
            params = list(params)
            super().__init__([dict(params=[p for p in params if id(p) in head], lr=lr),
                              dict(params=[p for p in params if id(p) not in head], lr=lr * lr_factor)], lr=lr, **kw)
    with mock.patch.object(torch.optim, "AdamW", SplitAdamW if lr_factor != 1.0 else AdamW):
        try: yield
        finally:
            for h in handles: h.remove()

def load_pretrained(name:str) -> tuple[Wav2Vec2Pretraining, dict]:
    saved = torch.load(CACHE/f"{name}.pt")
    pt = Wav2Vec2Pretraining(CFG); pt.load_state_dict(saved["state"])
    return pt, saved

def start(init:str, pretrained_name:str) -> tuple[Wav2Vec2, float]:
    "A fresh model (the same random weights for every scratch run) or the pretrained one; the pretraining seconds."
    torch.manual_seed(SEED); model = Wav2Vec2(CFG)
    if init == "scratch": return model, 0.0
    pt, saved = load_pretrained(pretrained_name)
    model.load_state_dict(pt.model.state_dict())
    return model, saved["seconds"]

def finetune(recipe_name:str, init:str, budget:int, speakers, pretrained_name:str, eval_at=(), stop=None):
    recipe, head_only, lr_factor, for_scratch = RECIPES[recipe_name]
    if init == "scratch" and not for_scratch: raise SystemExit(f"recipe {recipe_name} does not apply to a scratch start")
    vocab = CTCVocab()
    model, pre_s = start(init, pretrained_name)
    assert model.ctc_head.out_features == vocab.vocab_size  # finetune_ctc keeps this head, the one the hooks know
    recipe = replace(recipe, max_clips=budget)
    cpu0 = time.process_time()
    with recipe_hooks(model, head_only, lr_factor):
        run = finetune_ctc(model, recipe, digit_draw(speakers, budget), vocab, SEED, None, eval_at, stop=stop)
    return run, time.process_time() - cpu0, pre_s, vocab

def score(model, waves, texts, vocab, beam):
    t0 = time.perf_counter(); hyps = transcribe_ctc(model, waves, vocab, beam)
    return hyps, sum(len(t.split()) for t in texts), sum(edit_distance(t.split(), h.split()) for t, h in zip(texts, hyps)), time.perf_counter() - t0

def read(path):
    "The validation rows and runs recorded so far."
    r = json.loads(path.read_text())["results"] if path.exists() else {}
    return dict(rows=r.get("rows", []), runs=r.get("runs", {}))

def pretrain(speakers, name):
    cpu0 = time.process_time()
    pt, hist, secs = pretrain_wav2vec2(CFG, PRE, speakers, SEED)
    acc = float(np.mean(hist.series('accuracy')[1][-20:]))
    torch.save(dict(state=pt.state_dict(), seconds=secs, cpu_seconds=time.process_time() - cpu0, accuracy=acc), CACHE/f"{name}.pt")
    log(f"{name}: {secs:.0f} s, contrastive accuracy (last 20 steps) {acc:.1%}")

def run(recipe_name, init, budget):
    split = digit_split(HELD_OUT)
    r, cpu_s, pre_s, vocab = finetune(recipe_name, init, budget, split.train, f"pretrained_{HELD_OUT}_{PRE.steps}", EVAL_AT)
    torch.save(r.checkpoints, CACHE/f"ckpt_{recipe_name}_{init}_{budget}.pt")
    waves, texts = digit_wave_set(split.validation, 200)
    res = read(VAL); key = f"{recipe_name}/{init}/{budget}"
    res["rows"] = [x for x in res["rows"] if (x["recipe"], x["init"], x["budget"]) != (recipe_name, init, budget)]
    for step, ck in r.checkpoints.items():
        r.model.load_state_dict(ck)
        _, words, errors, _ = score(r.model, waves, texts, vocab, None)
        res["rows"].append(dict(recipe=recipe_name, held_out=HELD_OUT, budget=budget, init=init, step=step, beam=0, words=words, errors=errors,
                                train_seconds=r.seconds, pretrain_seconds=pre_s))
    res["runs"][key] = dict(command=harness.command(), train_seconds=r.seconds, cpu_seconds=cpu_s, pretrain_seconds=pre_s,
                            recipe=asdict(replace(RECIPES[recipe_name][0], max_clips=budget)), head_only_steps=RECIPES[recipe_name][1],
                            lr_factor_outside_head=RECIPES[recipe_name][2])
    log(f"{key}: {r.seconds:.0f} s ({cpu_s:.0f} CPU s); " + ", ".join(f"step {x['step']}: {x['errors'] / x['words']:.1%}" for x in res["rows"] if
                                                                      (x["recipe"], x["init"], x["budget"], x["beam"]) == (recipe_name, init, budget, 0)))
    harness.record(__file__, "finetune_recipes", dict(held_out=HELD_OUT, config=asdict(CFG), pretrain=asdict(PRE), eval_at=EVAL_AT, **res))
    report()

def beam():
    "Beam-8 decoding of the chosen recipe's kept checkpoints, so validation can choose between greedy and beam."
    split, vocab = digit_split(HELD_OUT), CTCVocab()
    waves, texts = digit_wave_set(split.validation, 200)
    res = read(VAL)
    for key in [k for k in res["runs"] if k.split("/")[0] == recipe_for(k.split("/")[1])]:
        name, init, budget = key.split("/"); budget = int(budget)
        if any((x["recipe"], x["init"], x["budget"]) == (name, init, budget) and x["beam"] for x in res["rows"]): continue  # decoded already
        ckpts, model = torch.load(CACHE/f"ckpt_{name}_{init}_{budget}.pt"), Wav2Vec2(CFG)
        for step in BEAM_AT:
            model.load_state_dict(ckpts[step])
            _, words, errors, _ = score(model, waves, texts, vocab, 8)
            res["rows"].append(dict(recipe=name, held_out=HELD_OUT, budget=budget, init=init, step=step, beam=8, words=words, errors=errors,
                                    train_seconds=res["runs"][key]["train_seconds"], pretrain_seconds=res["runs"][key]["pretrain_seconds"]))
            log(f"{key} step {step} beam 8: {errors / words:.1%}")
    harness.record(__file__, "finetune_recipes", dict(held_out=HELD_OUT, config=asdict(CFG), pretrain=asdict(PRE), eval_at=EVAL_AT, **res))
    report()

def test():
    "The frozen recipe's choices (stopping step, decoding) per budget and start, made on validation; the test speakers scored once."
    assert CHOSEN is not None
    res = read(VAL)
    chosen = choose_stopping([x for x in step2_rows(res["rows"]) if x["beam"] == 0 or x["step"] in BEAM_AT])
    log(f"chosen on validation: {chosen}")
    final = digit_split()
    waves, texts = digit_wave_set(final.test, 200)
    out = []
    for c in chosen:
        budget, step, beam_w = int(c["budget"]), int(c["step"]), int(c["beam"])
        r, cpu_s, pre_s, vocab = finetune(recipe_for(c["init"]), c["init"], budget, final.train, f"pretrained_final_{PRE.steps}", stop=step)
        hyps, _, _, dec_s = score(r.model, waves, texts, vocab, beam_w or None)
        ci = wer_interval(texts, hyps)
        out.append(dict(c, **ci._asdict(), train_seconds=r.seconds, cpu_seconds=cpu_s, pretrain_seconds=pre_s, decode_seconds=dec_s,
                        parameters=count_parameters(r.model), hyps=hyps, refs=texts))
        log(f"test, {budget} clips, {c['init']}: {ci}")
    harness.record(__file__, "recipe_test", dict(recipe=CHOSEN, chosen=chosen, pretrain=asdict(PRE),
                                                 pretrain_final=torch.load(CACHE/f"pretrained_final_{PRE.steps}.pt")["accuracy"], test=out))
    report()

def whisper():
    "Lesson 10a's digit Whisper (width 64) on all 500 labelled clips per speaker, with the CTC runs' steps, batch and warm-up; the test speakers once."
    from llmcourse.whisper_digits import TRAIN_SPEAKERS, DigitRecipe, digit_eval_set, evaluate_digits, train_digit_model
    recipe = DigitRecipe(d_model=64, steps=BASE.steps, batch_size=BASE.batch_size, warmup=BASE.warmup, max_clips=500)
    cpu0 = time.process_time()
    run = train_digit_model(recipe, TRAIN_SPEAKERS, seed=SEED, device="cpu")
    cpu_s = time.process_time() - cpu0
    mel, texts, _ = digit_eval_set(TEST_SPEAKERS, 200)
    t0 = time.perf_counter(); _, hyps = evaluate_digits(run.last, mel, texts); dec_s = time.perf_counter() - t0
    ci = wer_interval(texts, hyps)
    log(f"whisper: {ci}")
    harness.record(__file__, "recipe_whisper", dict(recipe=asdict(recipe), **ci._asdict(), train_seconds=run.seconds, cpu_seconds=cpu_s,
                                                    decode_seconds=dec_s, parameters=count_parameters(run.last)))
    report()

def pct(x): return f"{x:.1%}"

def report():
    res = read(VAL)
    fold = torch.load(CACHE/f"pretrained_{HELD_OUT}_{PRE.steps}.pt") if (CACHE/f"pretrained_{HELD_OUT}_{PRE.steps}.pt").exists() else None
    lines = ["## Fine-tuning the paper's way, then the test speakers (`finetune_recipes.py`)", "", harness.machine_line(), "",
             f"Step 1, validation only: fold {HELD_OUT} (its 200 validation utterances), 50 labelled clips per speaker, `CTCRecipe.slow()` with "
             f"{STEPS} steps, `PretrainRecipe.slow()` with {PRE.steps} steps ({PRE.warmup} warm-up) on the fold's three other speakers"
             + (f" (contrastive accuracy {fold['accuracy']:.1%} over its last 20 steps)" if fold else "") + "; greedy decoding. "
             "One change at a time against `base` (see the script's docstring); every scratch run here starts from the same random weights. "
             "The `base` rows come from `longer_finetune.py` (same fold, budget, schedule, data seed and pretraining seed; its pretraining reached the same "
             "contrastive accuracy, so the pretrained start is the same checkpoint; its scratch start is another random draw). "
             "CPU s: process time of the fine-tuning (one thread), pretraining not included; fine-tune s is wall-clock and grows with the "
             "machine's load (these runs shared the 2 cores with higher-priority jobs, load average about 6), so compare CPU s.", "",
             "| recipe | start | " + " | ".join(f"WER at step {s}" for s in EVAL_AT) + " | fine-tune s | CPU s |", "| --- | --- |" + " --- |" * (len(EVAL_AT) + 2)]
    before = HERE/"longer_finetune_pretrain3000_budget50.json"  # the base recipe, run before by longer_finetune.py: the same fold, budget,
    if before.exists():                                          # schedule, seed and 3000-step pretraining (the same checkpoint: its accuracy is the same)
        b = json.loads(before.read_text())["results"]
        for init in ("scratch", "pretrained"):
            g = sorted((x for x in b["rows"] if x["init"] == init), key=lambda x: x["step"])
            lines.append(f"| base (`longer_finetune.py`) | {init} | " + " | ".join(pct(x["errors"] / x["words"]) for x in g) + f" | {g[0]['train_seconds']:.0f} | - |")
    for key, meta in res["runs"].items():
        name, init, budget = key.split("/")
        if int(budget) != 50: continue
        g = sorted((x for x in res["rows"] if (x["recipe"], x["init"], x["budget"], x["beam"]) == (name, init, 50, 0)), key=lambda x: x["step"])
        lines.append(f"| {name} | {init} | " + " | ".join(pct(x["errors"] / x["words"]) for x in g) + f" | {meta['train_seconds']:.0f} | {meta['cpu_seconds']:.0f} |")
    if not (HERE/"recipe_test.json").exists():
        lines += ["", "Step 2 has not run yet: this script has not scored the test speakers."]
    if CHOSEN:
        lines += ["", f"Chosen on validation for step 2: `{CHOSEN}` (the lowest pretrained WER at any checkpoint above: none of the paper's changes helped)."]
        rows = step2_rows(res["rows"])
        if any(x["budget"] != 50 or x["beam"] for x in rows):
            lines += ["", f"Step 2, validation (fold {HELD_OUT}), recipe `{CHOSEN}`: every checkpoint and decoding validation chooses among.", "",
                      "| clips per speaker | start | " + " | ".join(f"step {s} greedy / beam 8" for s in BEAM_AT) + " |", "| --- | --- |" + " --- |" * len(BEAM_AT)]
            for budget in sorted({x["budget"] for x in rows}):
                for init in ("scratch", "pretrained"):
                    def w(step, b):
                        m = [x for x in rows if (x["budget"], x["init"], x["step"], x["beam"]) == (budget, init, step, b)]
                        return pct(m[0]["errors"] / m[0]["words"]) if m else "-"
                    if any(x["budget"] == budget and x["init"] == init for x in rows):
                        lines.append(f"| {budget} | {init} | " + " | ".join(f"{w(s, 0)} / {w(s, 8)}" for s in BEAM_AT) + " |")
    tp = HERE/"recipe_test.json"
    if tp.exists():
        t = json.loads(tp.read_text()); tr = t["results"]
        lines += ["", f"Test: {', '.join(TEST_SPEAKERS)}, 200 utterances, scored once with the choices above frozen; pretraining {PRE.steps} steps on the "
                  f"four training speakers (contrastive accuracy {tr['pretrain_final']:.1%}); fine-tuning on the four training speakers, stopped at the chosen step. "
                  f"Command `{t['command']}`, commit {t['commit']}; {harness.machine_line(t['machine'])}.", "",
                  "| clips per speaker | start | chosen step | decoding | validation WER | test WER (95% bootstrap interval) | fine-tune s | CPU s | pretrain s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in tr["test"]:
            lines.append(f"| {r['budget']} | {r['init']} | {r['step']} | {'beam ' + str(r['beam']) if r['beam'] else 'greedy'} | {pct(r['validation_wer'])} | "
                         f"{pct(r['wer'])} ({pct(r['low'])} to {pct(r['high'])}) | {r['train_seconds']:.0f} | {r['cpu_seconds']:.0f} | {r['pretrain_seconds']:.0f} |")
        lines += ["", "The test speakers were scored once before, by `pretraining.py` (300 pretraining and 300 fine-tuning steps; its section above): "
                  "that table and this one are the only two test scorings."]
        wp = HERE/"recipe_whisper.json"
        if wp.exists():
            w = json.loads(wp.read_text())["results"]
            ctc = {r["init"]: r for r in tr["test"] if r["budget"] == 500}
            lines += ["", f"Against lesson 10a's digit Whisper (width 64), trained on the same 500 labelled clips per speaker with the same steps ({w['recipe']['steps']}), "
                      "batch and warm-up, no pretraining, greedy decoding, its last step (no choice made on validation); the same 200 test utterances, "
                      f"scored once (`python bench/10b_wav2vec2/finetune_recipes.py whisper`). Decoding s: wall-clock for the 200 utterances, one thread.", "",
                      "| model | parameters | fine-tune s | decoding | decoding s | test WER (95% bootstrap interval) |", "| --- | --- | --- | --- | --- | --- |",
                      f"| 10a Whisper, width 64 | {w['parameters']:,} | {w['train_seconds']:.0f} | greedy | {w['decode_seconds']:.1f} | {pct(w['wer'])} ({pct(w['low'])} to {pct(w['high'])}) |"]
            for init, r in sorted(ctc.items()):
                lines.append(f"| wav2vec 2.0 + CTC, {init} | {r['parameters']:,} | {r['train_seconds']:.0f} | {'beam ' + str(r['beam']) if r['beam'] else 'greedy'} | {r['decode_seconds']:.1f} | "
                             f"{pct(r['wer'])} ({pct(r['low'])} to {pct(r['high'])}) |")
    harness.write_section(__file__, "finetune_recipes", "\n".join(lines))

if __name__ == "__main__":
    ap = argparse.ArgumentParser(); ap.add_argument("part"); ap.add_argument("recipe", nargs="?"); ap.add_argument("init", nargs="?")
    ap.add_argument("--budget", type=int, default=50); a = ap.parse_args()
    if a.part == "pretrain-fold": pretrain(digit_split(HELD_OUT).train, f"pretrained_{HELD_OUT}_{PRE.steps}")
    elif a.part == "whisper": whisper()
    elif a.part == "pretrain-final": pretrain(digit_split().train, f"pretrained_final_{PRE.steps}")
    elif a.part == "run": run(a.recipe, a.init, a.budget)
    elif a.part == "beam": beam()
    elif a.part == "test": test()
    elif a.part == "report": report()
    else: raise SystemExit(f"unknown part {a.part!r}: pretrain-fold, pretrain-final, run, beam, test, whisper or report")
