"""What pretraining buys, at the slow presets: lesson 10b's `validate_pretraining` on the validation folds in `FOLDS`,
`choose_stopping` over them, then `score_pretraining` on the test speakers, once; beside it lesson 10a's digit Whisper
trained on the same labelled clips for as many steps. Each part is a process of its own (so folds can run side by
side on a machine with cores to spare); `report` writes RESULTS.md from the parts' JSON. On one shared core:

    nice -n 10 python bench/10b_wav2vec2/pretraining.py fold lucas
    nice -n 10 python bench/10b_wav2vec2/pretraining.py pretrain   # the final pretraining needs no choice
    nice -n 10 python bench/10b_wav2vec2/pretraining.py test
    nice -n 10 python bench/10b_wav2vec2/pretraining.py whisper
    python bench/10b_wav2vec2/pretraining.py report
"""
import json, sys, time
from dataclasses import asdict
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import numpy as np
import torch
from llmcourse.wav2vec2 import Wav2Vec2Config
from llmcourse.core import cache_dir
from llmcourse.wav2vec2_pretraining import CTCRecipe, PretrainRecipe, Wav2Vec2Pretraining, pretrain_wav2vec2, choose_stopping, count_parameters, score_pretraining, validate_pretraining
from llmcourse.whisper_digits import (TEST_SPEAKERS, TRAIN_SPEAKERS, VALIDATION_SPEAKERS, DigitRecipe, digit_eval_set, evaluate_digits,
                                      train_digit_model, wer_interval)

HERE = Path(__file__).resolve().parent
CFG, PRE, FT = Wav2Vec2Config.digits(), PretrainRecipe.slow(), CTCRecipe.slow()
BUDGETS, EVAL_AT = [50, 500], [FT.steps // 2, FT.steps]  # labelled clips per speaker (500: all of them); checkpoints validation chooses among
FOLDS = VALIDATION_SPEAKERS[:1]  # lesson 10a's first fold only: the second would double the hour this takes on one shared core
torch.set_num_threads(1)

def log(line): print(line, flush=True)

def fold(held_out):
    rows = validate_pretraining(CFG, PRE, FT, BUDGETS, held_out, EVAL_AT, log=log)
    harness.record(__file__, f"validation_{held_out}", dict(config=asdict(CFG), pretrain=asdict(PRE), finetune=asdict(FT), rows=rows))

def pretrain():
    "The final pretraining run, on all four training speakers: it depends on no validation choice, so it runs beside the folds."
    pt, hist, secs = pretrain_wav2vec2(CFG, PRE, TRAIN_SPEAKERS, 0)
    torch.save(dict(state=pt.state_dict(), seconds=secs), cache_dir("10b_wav2vec2")/"pretrained_final.pt")
    log(f"final pretraining: {secs:.0f} s, contrastive {np.mean(hist.series('contrastive')[1][-20:]):.3f}, accuracy {np.mean(hist.series('accuracy')[1][-20:]):.1%}")

def test():
    rows = sum((json.loads((HERE/f"validation_{h}.json").read_text())["results"]["rows"] for h in FOLDS), [])
    chosen = choose_stopping(rows)
    log(f"chosen on validation: {chosen}")
    saved = torch.load(cache_dir("10b_wav2vec2")/"pretrained_final.pt")
    pt = Wav2Vec2Pretraining(CFG); pt.load_state_dict(saved["state"])
    out = score_pretraining(CFG, PRE, FT, chosen, log=log, pretrained=(pt, saved["seconds"]))
    harness.record(__file__, "test", dict(chosen=chosen, test=out))

def whisper():
    "Lesson 10a's digit Whisper (width 64) on the 50 labelled clips per speaker, as many steps and utterances per step as the CTC fine-tuning."
    recipe = DigitRecipe(d_model=64, steps=FT.steps, batch_size=FT.batch_size, warmup=FT.warmup, max_clips=max(BUDGETS))
    run = train_digit_model(recipe, TRAIN_SPEAKERS, seed=0, device="cpu")
    mel, texts, _ = digit_eval_set(TEST_SPEAKERS, 200)
    t0 = time.perf_counter(); _, hyps = evaluate_digits(run.last, mel, texts); decode_s = time.perf_counter() - t0
    ci = wer_interval(texts, hyps)
    log(f"whisper: {ci}")
    harness.record(__file__, "whisper", dict(recipe=asdict(recipe), **ci._asdict(), train_seconds=run.seconds, decode_seconds=decode_s,
                                             parameters=count_parameters(run.last)))

def report():
    folds = {h: json.loads((HERE/f"validation_{h}.json").read_text()) for h in FOLDS}
    t = json.loads((HERE/"test.json").read_text()); w = json.loads((HERE/"whisper.json").read_text())
    lines = [f"Validation fold(s) {', '.join(FOLDS)} (pretrained on each fold's three other speakers), then the test speakers "
             f"{', '.join(TEST_SPEAKERS)} scored once with the frozen choices; 200 utterances each (lesson 10a's `digit_utterances`).",
             f"Model `Wav2Vec2Config.digits()` ({count_parameters(Wav2Vec2Pretraining(CFG).model):,} parameters); `PretrainRecipe.slow()` {PRE.steps} steps of "
             f"{PRE.batch_size} unlabelled utterances; `CTCRecipe.slow()` {FT.steps} steps of {FT.batch_size}, lr {FT.lr}, warm-up {FT.warmup} then cosine decay, "
             f"everything trained in both starts (only the starting weights differ); checkpoints at {EVAL_AT} and greedy or beam-8 decoding chosen on validation.", "",
             f"Commands: `{folds[VALIDATION_SPEAKERS[0]]['command']}` (one per fold), `{t['command']}`, `{w['command']}`; commit {t['commit']}.",
             f"Machine: {harness.machine_line(t['machine'])}.", "",
             "| labelled clips per speaker | start | chosen step | decoding | validation WER | test WER (95% bootstrap interval) | fine-tune s |",
             "|---|---|---|---|---|---|---|"]
    for r in t["results"]["test"]:
        lines.append(f"| {r['budget']} | {r['init']} | {r['step']} | {'beam ' + str(r['beam']) if r['beam'] else 'greedy'} | {r['validation_wer']:.1%} | "
                     f"{r['wer']:.1%} ({r['low']:.1%} to {r['high']:.1%}) | {r['train_seconds']:.0f} |")
    wr = w["results"]
    best = min((r for r in t["results"]["test"] if r["budget"] == max(BUDGETS)), key=lambda r: r["validation_wer"])
    lines += ["", f"Against lesson 10a's digit Whisper, trained on the same {max(BUDGETS)} labelled clips per speaker for the same steps and batch "
              "(no pretraining, greedy; no choices made on validation), the same 200 test utterances:", "",
              "| model | parameters | training s | decoding s (200 utterances) | test WER (95% interval) |", "|---|---|---|---|---|",
              f"| 10a Whisper, width 64 | {wr['parameters']:,} | {wr['train_seconds']:.0f} | {wr['decode_seconds']:.1f} | {wr['wer']:.1%} ({wr['low']:.1%} to {wr['high']:.1%}) |",
              f"| wav2vec 2.0 + CTC, {best['init']} (lower validation WER at {max(BUDGETS)} clips) | {best['parameters']:,} | {best['train_seconds'] + best['pretrain_seconds']:.0f} "
              f"| {best['decode_seconds']:.1f} | {best['wer']:.1%} ({best['low']:.1%} to {best['high']:.1%}) |", "",
              "Validation rows (errors / words per fold, checkpoint and decoding) are in validation_<speaker>.json; the test transcripts in test.json."]
    harness.write_section(__file__, "pretraining", "\n".join(lines))

if __name__ == "__main__":
    part = sys.argv[1]
    {"fold": lambda: fold(sys.argv[2]), "pretrain": pretrain, "test": test, "whisper": whisper, "report": report}[part]()
