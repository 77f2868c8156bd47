"""Lesson 10a: train the final digit models on all four training speakers, with the recipe and the weights that
validation chose; they ship with the package.

Reads the chosen decoding from `llmcourse/assets/whisper_digits/validation.json` (written by `digits_validation.py`),
trains `DigitRecipe.slow()` on `TRAIN_SPEAKERS` with seeds 0, 1 and 2 (the same `train_digit_model` the lesson's slow
cell calls), and writes the chosen weights (float16) and each history to `llmcourse/assets/whisper_digits/`. Nothing
is scored here: the test speakers are scored once, by `digits_test.py`. A model already written is kept, so an
interrupted run resumes model by model.

    nice -n 10 python bench/10a_whisper_digits/digits_final.py
"""
import argparse, json, sys, time
from dataclasses import asdict
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import machine_line, record, write_section, ROOT
from llmcourse.core import History, cache_dir
from llmcourse.whisper_digits import TRAIN_SPEAKERS, DigitDecoding, DigitRecipe, save_digit_model, train_digit_model

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    assets = ROOT/"llmcourse"/"assets"/"whisper_digits"
    chosen = DigitDecoding(**json.loads((assets/"validation.json").read_text())["chosen"])
    recipe, done = DigitRecipe.slow(), {}
    for seed in a.seeds:
        path = assets/f"digits_s{seed}.pt"
        times = cache_dir("whisper_digits", "final")/f"s{seed}.time.json"  # CPU and wall seconds, kept out of the package
        if not (path.exists() and times.exists()):
            c0 = time.process_time()
            run = train_digit_model(recipe, TRAIN_SPEAKERS, seed, device="cpu")
            save_digit_model(run.weights(chosen.weights), path)
            run.history.save(path.with_suffix(".json"))
            times.write_text(json.dumps(dict(wall_s=round(run.seconds), cpu_s=round(time.process_time() - c0))) + "\n")
            print(f"seed {seed}: {run.seconds:.0f} s", flush=True)
        loss = History.load(path.with_suffix(".json")).series("loss")[1]
        done[seed] = dict(file=path.name, weights=chosen.weights, final_loss=sum(loss[-100:]) / 100, **json.loads(times.read_text()))
    record(__file__, "digits_final", dict(recipe=asdict(recipe), speakers=list(TRAIN_SPEAKERS), models=done))
    lines = ["## The final models (`digits_final.py`)", "", f"Machine: {machine_line()}.", "",
             f"`DigitRecipe.slow()` on {', '.join(TRAIN_SPEAKERS)}; the {chosen.weights} weights, as validation chose, saved in float16.", "",
             "| seed | file | CPU s | wall s | last-100-step loss |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {s} | {d['file']} | {d['cpu_s']} | {d['wall_s']} | {d['final_loss']:.3f} |" for s, d in done.items()]
    write_section(__file__, "digits_final", "\n".join(lines))

if __name__ == "__main__":
    main()
