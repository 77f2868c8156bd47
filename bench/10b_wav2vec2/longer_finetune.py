"""Lesson 10b: does pretraining pay once fine-tuning is long enough to leave the blank plateau? Validation only.

`validate_pretraining` on lucas' fold (pretrained on the fold's three other speakers with `PretrainRecipe.slow()`),
`--budget` labelled clips per speaker (default all 500), `CTCRecipe.slow()` stretched to `--steps` fine-tuning steps (the cosine decay
over the whole run), greedy decoding of the held-out speaker's 200 utterances at four checkpoints, from scratch and
from pretraining. The test speakers are not touched. Writes `longer_finetune.json` and its RESULTS.md section.

    nice -n 10 python bench/10b_wav2vec2/longer_finetune.py [--steps 1000] [--pretrain-steps 3000] [--budget 50]
"""
import argparse, sys
from dataclasses import asdict, replace
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import torch
from llmcourse.wav2vec2 import Wav2Vec2Config
from llmcourse.wav2vec2_pretraining import CTCRecipe, PretrainRecipe, validate_pretraining

ap = argparse.ArgumentParser(); ap.add_argument("--steps", type=int, default=1000); ap.add_argument("--held-out", default="lucas"); ap.add_argument("--budget", type=int, default=500, help="labelled clips per speaker")
ap.add_argument("--pretrain-steps", type=int, default=None, help="pretraining steps (default: PretrainRecipe.slow()'s)"); a = ap.parse_args()
torch.set_num_threads(1)
cfg, ft = Wav2Vec2Config.digits(), replace(CTCRecipe.slow(), steps=a.steps)
pre = PretrainRecipe.slow() if a.pretrain_steps is None else replace(PretrainRecipe.slow(), steps=a.pretrain_steps, warmup=a.pretrain_steps // 10)
eval_at = [a.steps * k // 4 for k in (1, 2, 3, 4)]
rows = validate_pretraining(cfg, pre, ft, [a.budget], a.held_out, eval_at, beams=(None,), log=lambda s: print(s, flush=True))
name = "longer_finetune" + (f"_pretrain{a.pretrain_steps}" if a.pretrain_steps else "") + (f"_budget{a.budget}" if a.budget != 500 else "")
harness.record(__file__, name, dict(config=asdict(cfg), pretrain=asdict(pre), finetune=asdict(ft), eval_at=eval_at, rows=rows))
lines = [f"## Longer fine-tuning, validation only (`longer_finetune.py`), pretraining {pre.steps} steps", "", harness.machine_line(), "",
         f"Fold {a.held_out} (its 200 validation utterances, greedy decoding); {a.budget} labelled clips per speaker; `PretrainRecipe.slow()` with {pre.steps} steps ({pre.warmup} warm-up); "
         f"`CTCRecipe.slow()` with {a.steps} steps. Test speakers not scored.", "",
         "| start | " + " | ".join(f"WER at step {s}" for s in eval_at) + " | fine-tune s |", "| --- |" + " --- |" * (len(eval_at) + 1)]
for init in ("scratch", "pretrained"):
    r = [x for x in rows if x["init"] == init]
    lines.append(f"| {init} | " + " | ".join(f"{x['errors'] / x['words']:.1%}" for x in sorted(r, key=lambda x: x["step"])) + f" | {r[0]['train_seconds']:.0f} |")
harness.write_section(__file__, name, "\n".join(lines))
print("\n".join(lines))
