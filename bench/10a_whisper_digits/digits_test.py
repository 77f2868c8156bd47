"""Lesson 10a: score the test speakers (jackson, theo) once, with the decoding that validation chose, frozen.

Reads the choice from `llmcourse/assets/whisper_digits/validation.json` and the final models from the same folder,
transcribes the 200 test utterances, and reports the WER with a 95% bootstrap interval over utterances, per speaker,
and with every possible choice of seeds for the same decoding (the spread over seeds). It also decodes once more with
the models in float64: the words that change measure how far floating-point rounding alone moves the result, the
margin the lesson's and the tests' thresholds allow for other CPUs. Writes `digits_test.json` and its RESULTS.md section.

    python bench/10a_whisper_digits/digits_test.py
"""
import itertools, json, sys
from dataclasses import asdict
from pathlib import Path
import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import machine_line, record, write_section, ROOT
from llmcourse.whisper import edit_distance, word_error_rate
from llmcourse.whisper_digits import (TEST_SPEAKERS, TRAIN_SPEAKERS, DigitDecoding, DigitRecipe, decode_digit_set, digit_eval_set,
                                      ensemble_transcribe, load_digit_model, wer_interval)

GOAL = 0.15  # the lesson's target, set before any run

def main():
    torch.set_num_threads(1)
    assets = ROOT/"llmcourse"/"assets"/"whisper_digits"
    chosen = DigitDecoding(**json.loads((assets/"validation.json").read_text())["chosen"])
    models = [load_digit_model(assets/f"digits_s{s}.pt", DigitRecipe.slow().model_config()) for s in range(3)]
    refs, hyps, who = decode_digit_set(models, chosen, TEST_SPEAKERS, TRAIN_SPEAKERS)
    head = wer_interval(refs, hyps)
    speakers = {s: wer_interval([r for r, w in zip(refs, who) if w == s], [h for h, w in zip(hyps, who) if w == s]) for s in TEST_SPEAKERS}
    seeds = {}
    for combo in itertools.combinations(range(len(models)), chosen.n_models):
        r, h, _ = decode_digit_set([models[i] for i in combo], chosen, TEST_SPEAKERS, TRAIN_SPEAKERS)
        seeds["+".join(map(str, combo))] = word_error_rate(r, h)
    # float64: the same weights, the features and every sum in double precision
    mel, texts, _ = digit_eval_set(TEST_SPEAKERS, peak=chosen.peak, equalizer_db=chosen.equalizer_db, reference=TRAIN_SPEAKERS)
    hyps64 = ensemble_transcribe([m.double() for m in models[:chosen.n_models]], mel.double(), stretches=chosen.stretches)
    changed = sum(edit_distance(a.split(), b.split()) for a, b in zip(hyps, hyps64))
    results = dict(chosen=asdict(chosen), goal=GOAL, test=head._asdict(), speakers={s: c._asdict() for s, c in speakers.items()},
                   seeds=seeds, seed_mean=float(np.mean(list(seeds.values()))), seed_sd=float(np.std(list(seeds.values()))),
                   float64_word_changes=changed, float64_wer=word_error_rate(texts, hyps64))
    record(__file__, "digits_test", results)
    lines = ["## The test speakers, scored once (`digits_test.py`)", "", f"Machine: {machine_line()}.", "",
             f"Decoding frozen on validation speakers: {chosen}. Models: `digits_s0.pt`, `digits_s1.pt`, `digits_s2.pt`.", "",
             "| scored | WER | 95% bootstrap interval |", "| --- | --- | --- |",
             f"| all {head.utterances} utterances ({head.words} words) | **{head.wer:.1%}** | {head.low:.1%} to {head.high:.1%} |"]
    lines += [f"| {s} ({c.utterances} utterances) | {c.wer:.1%} | {c.low:.1%} to {c.high:.1%} |" for s, c in speakers.items()]
    lines += ["", "The same decoding with each choice of seeds: " + ", ".join(f"seeds {k}: {v:.1%}" for k, v in seeds.items())
              + f" (mean {results['seed_mean']:.1%}, standard deviation {results['seed_sd']:.1%}).", "",
              f"The goal, set before any run, was {GOAL:.0%} or less: " + ("met." if head.high <= GOAL else "met by the point estimate, not by the whole interval." if head.wer <= GOAL else "missed."), "",
              f"In float64 the same models change {changed} word(s) of the transcripts (WER {results['float64_wer']:.1%})."]
    write_section(__file__, "digits_test", "\n".join(lines))
    print("\n".join(lines))

if __name__ == "__main__":
    main()
