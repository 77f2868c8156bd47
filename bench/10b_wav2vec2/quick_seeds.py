"""Lesson 10b, quick mode: the spread over fine-tuning seeds of what the lesson's quick CTC cell asserts.

The lesson's quick pretraining (seed 0, yweweler's fold), then its four quick fine-tuning runs (50 and 500 clips per
speaker, from scratch and from pretraining, `CTCRecipe.quick()`) for each of `--seeds`: the ratio of the mean of the
last 5 CTC losses to the first, which the lesson asserts is under 0.1, and the validation WER on yweweler's 50
utterances. Writes `quick_seeds.json` and its RESULTS.md section.

    nice -n 10 python bench/10b_wav2vec2/quick_seeds.py [--seeds 0 1 2 3 4]
"""
import argparse, itertools, sys
from dataclasses import replace
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import numpy as np
import torch
from llmcourse.wav2vec2 import CTCVocab, Wav2Vec2, Wav2Vec2Config
from llmcourse.wav2vec2_pretraining import CTCRecipe, PretrainRecipe, digit_draw, digit_wave_set, finetune_ctc, pretrain_wav2vec2
from llmcourse.whisper_digits import digit_split

ap = argparse.ArgumentParser(); ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4]); a = ap.parse_args()
torch.set_num_threads(1)
cfg, vocab, fold = Wav2Vec2Config.digits(), CTCVocab(), digit_split("yweweler")
pretrained = pretrain_wav2vec2(cfg, PretrainRecipe.quick(), fold.train, seed=0)[0]
valid, recipe = digit_wave_set(fold.validation, 50), CTCRecipe.quick()
rows = []
for seed, budget, init in itertools.product(a.seeds, (50, 500), ("scratch", "pretrained")):
    torch.manual_seed(seed); m = Wav2Vec2(cfg)
    if init == "pretrained": m.load_state_dict(pretrained.model.state_dict())
    run = finetune_ctc(m, replace(recipe, max_clips=budget), digit_draw(fold.train, budget), vocab, seed=seed, valid=valid, eval_at=[recipe.steps])
    losses = run.history.series("loss")[1]
    rows.append(dict(seed=seed, budget=budget, start=init, first=float(losses[0]), last5=float(np.mean(losses[-5:])),
                     ratio=float(np.mean(losses[-5:]) / losses[0]), valid_wer=float(run.history.last("valid_wer"))))
    print(rows[-1], flush=True)
ratios = [r["ratio"] for r in rows]
harness.record(__file__, "quick_seeds", dict(seeds=a.seeds, recipe=str(recipe), rows=rows, ratio_min=min(ratios), ratio_max=max(ratios)))
lines = ["## The quick CTC cell over fine-tuning seeds (`quick_seeds.py`)", "", harness.machine_line(), "",
         f"Seeds {a.seeds}; the lesson asserts last-5 / first loss < 0.1. Over all {len(rows)} runs the ratio ranged "
         f"{min(ratios):.3f} to {max(ratios):.3f}; validation WER {min(r['valid_wer'] for r in rows):.0%} to {max(r['valid_wer'] for r in rows):.0%}.", "",
         "| seed | clips per speaker | start | first loss | last-5 loss | ratio | validation WER |", "| --- | --- | --- | --- | --- | --- | --- |"]
lines += [f"| {r['seed']} | {r['budget']} | {r['start']} | {r['first']:.1f} | {r['last5']:.2f} | {r['ratio']:.3f} | {r['valid_wer']:.0%} |" for r in rows]
harness.write_section(__file__, "quick_seeds", "\n".join(lines))
