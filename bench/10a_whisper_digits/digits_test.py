"""Lesson 10a: score the test speakers (jackson, theo) once, with the decoding that validation chose, frozen.

Reads the choice from `llmcourse/assets/whisper_digits/validation.json` and the three final models from the same
folder, and transcribes the 200 test utterances with `score_digit_models`, as the lesson does: every choice of seeds
the decoding allows is a run, and the WER is reported pooled over the runs with a 95% bootstrap interval over
utterances and runs, per speaker, and per run. It also decodes once more with the models in float64: the words that
change measure how far floating-point rounding alone moves the result, the margin that the lesson's and the tests'
thresholds allow for other CPUs. Writes `digits_test.json`, its RESULTS.md section, and
`llmcourse/assets/whisper_digits/test.json` (the record the tests check the package's models against).

    python bench/10a_whisper_digits/digits_test.py
    python bench/10a_whisper_digits/digits_test.py --models FOLDER   (the same scoring of digits_s0-2.pt in FOLDER,
        e.g. $LLMCOURSE_HOME/whisper_digits/final after the lesson's slow cell trained them again; writes its own
        section beside the package's record and leaves test.json alone)
"""
import argparse, json, sys
from dataclasses import asdict
from pathlib import Path
import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import machine_line, record, write_section, ROOT
from llmcourse.whisper import edit_distance
from llmcourse.whisper_digits import DigitDecoding, DigitRecipe, load_digit_model, score_digit_models

GOAL = 0.15  # the lesson's target, set before any run

def main(models_dir:Path|None=None):
    torch.set_num_threads(1)
    assets = ROOT/"llmcourse"/"assets"/"whisper_digits"
    chosen = DigitDecoding(**json.loads((assets/"validation.json").read_text())["chosen"])
    if models_dir: return score_retrained(models_dir, assets, chosen)
    models = [load_digit_model(assets/f"digits_s{s}.pt", DigitRecipe.slow().model_config()) for s in range(3)]
    score = score_digit_models(models, chosen)
    # float64: the same weights, every sum in double precision (the features are computed in float32 either way)
    score64 = score_digit_models([m.double() for m in models], chosen)
    changed = {k: sum(edit_distance(a.split(), b.split()) for a, b in zip(score.hyps[k], score64.hyps[k])) for k in score.hyps}
    run_wers = [c.wer for c in score.runs.values()]
    met = "met by the whole interval" if score.overall.high <= GOAL else "met by the estimate, not by the whole interval" if score.overall.wer <= GOAL else "missed"
    results = dict(chosen=asdict(chosen), goal=GOAL, goal_verdict=met, test=score.overall._asdict(),
                   speakers={s: c._asdict() for s, c in score.speakers.items()}, runs={k: c._asdict() for k, c in score.runs.items()},
                   run_mean=float(np.mean(run_wers)), run_sd=float(np.std(run_wers, ddof=1)) if len(run_wers) > 1 else 0.0,
                   float64_word_changes=changed, float64_test=score64.overall._asdict())
    record(__file__, "digits_test", results)
    # the record the package carries: the tests check that its models, decoded again on any CPU, give these errors
    margin = max(3, 2 * max(changed.values()))  # words; float64 moved at most max(changed) words per run
    (assets/"test.json").write_text(json.dumps(dict(
        chosen=asdict(chosen), goal=GOAL, test=score.overall._asdict(), margin_words=margin,
        runs={k: dict(errors=round(c.wer * c.words), words=c.words) for k, c in score.runs.items()},
        note="Scored once by bench/10a_whisper_digits/digits_test.py after every choice was frozen on validation speakers; "
             f"margin_words = max(3, twice the {max(changed.values())} words per run that float64 changed)"), indent=1) + "\n")
    o = score.overall
    lines = ["## The test speakers, scored once (`digits_test.py`)", "", f"Machine: {machine_line()}.", "",
             f"Decoding frozen on validation speakers: {chosen}. Models: `digits_s0.pt`, `digits_s1.pt`, `digits_s2.pt`.", "",
             "| scored | WER | 95% bootstrap interval | resampled |", "| --- | --- | --- | --- |",
             f"| all {o.utterances} utterances ({o.words} words), {o.runs} runs pooled | **{o.wer:.1%}** | {o.low:.1%} to {o.high:.1%} | utterances and runs |"]
    lines += [f"| {s} ({c.utterances} utterances), runs pooled | {c.wer:.1%} | {c.low:.1%} to {c.high:.1%} | utterances and runs |" for s, c in score.speakers.items()]
    lines += [f"| {k} alone | {c.wer:.1%} | {c.low:.1%} to {c.high:.1%} | utterances |" for k, c in score.runs.items()]
    lines += ["", f"Over the runs: mean {results['run_mean']:.1%}, standard deviation {results['run_sd']:.1%}.", "",
              f"The goal, set before any run, was a WER of {GOAL:.0%} or less: {met}.", "",
              "In float64 the same models change " + ", ".join(f"{v} word(s) in {k}" for k, v in changed.items())
              + f" (pooled WER {score64.overall.wer:.1%})."]
    write_section(__file__, "digits_test", "\n".join(lines))
    print("\n".join(lines))

def score_retrained(models_dir:Path, assets:Path, chosen:DigitDecoding):
    "Score the three models in `models_dir` exactly as the package's were, beside the package's record."
    models = [load_digit_model(models_dir/f"digits_s{s}.pt", DigitRecipe.slow().model_config()) for s in range(3)]
    runs = [json.loads((models_dir/f"digits_s{s}.run.json").read_text()) for s in range(3)]  # how each was trained
    package = json.loads((assets/"test.json").read_text())
    if json.loads(json.dumps(asdict(chosen))) != package["chosen"]: raise SystemExit("the package's test record was made with another decoding")
    score = score_digit_models(models, chosen)
    results = dict(chosen=asdict(chosen), test=score.overall._asdict(), speakers={s: c._asdict() for s, c in score.speakers.items()},
                   runs={k: c._asdict() for k, c in score.runs.items()}, trained=[{k: r[k] for k in ("recipe", "seed", "weights")} for r in runs],
                   package_test=package["test"])
    record(__file__, "digits_test_retrained", results)
    o, p = score.overall, package["test"]
    lines = ["## The final recipe trained again, the test speakers scored the same way (`digits_test.py --models`)", "",
             f"Machine: {machine_line()}.", "",
             "Three models trained again with the frozen recipe and seeds 0, 1, 2 (here by lesson 10a's slow cell under `make slow`), "
             "decoded as the package's models were. No choice is made from these numbers; they show how far retraining moves the result.", "",
             "| models | WER | 95% bootstrap interval (utterances and runs) |", "| --- | --- | --- |",
             f"| the package's (`test.json`) | {p['wer']:.1%} | {p['low']:.1%} to {p['high']:.1%} |",
             f"| trained again, {o.runs} runs pooled | **{o.wer:.1%}** | {o.low:.1%} to {o.high:.1%} |"]
    lines += [f"| trained again, {k} alone | {c.wer:.1%} | {c.low:.1%} to {c.high:.1%} (utterances) |" for k, c in score.runs.items()]
    lines += [f"| trained again, {s}, runs pooled | {c.wer:.1%} | {c.low:.1%} to {c.high:.1%} |" for s, c in score.speakers.items()]
    lines += ["", f"The lesson's goal, {GOAL:.0%}, with the models trained again: " + ("met by the whole interval" if o.high <= GOAL else
              "met by the estimate, not by the whole interval" if o.wer <= GOAL else "missed") + "."]
    write_section(__file__, "digits_test_retrained", "\n".join(lines))
    print("\n".join(lines))

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=Path, help="a folder with digits_s0.pt ... digits_s2.pt and their .run.json records")
    main(ap.parse_args().models)
