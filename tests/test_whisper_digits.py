"""Lesson 10a (`llmcourse.whisper_digits`): the speaker split, the data and its augmentation, the per-speaker equaliser,
the training loop and its schedule, the WER interval against scipy's bootstrap, the choice on validation speakers,
saving and loading (bad files get errors that name them), and the shipped models on the test speakers."""
import itertools, json
from dataclasses import asdict
import numpy as np
import pytest
import torch
from torch.testing import assert_close
from llmcourse.core import asset_path, lr_multiplier
from llmcourse.whisper import WhisperModelConfig, Whisper, edit_distance, log_mel_spectrogram, word_error_rate
from llmcourse.whisper_digits import (STRETCH_SETS, TEST_SPEAKERS, TRAIN_SPEAKERS, VALIDATION_SPEAKERS, DigitDecoding, DigitRecipe,
                                      DigitSplit, DigitUtterances, choose_decoding, decode_digit_set, digit_eval_set, digit_folds,
                                      digit_split, digit_utterances, ensemble_transcribe, equalizer_gains, evaluate_digits,
                                      load_digit_model, normalize_peak, save_digit_model, score_digit_models, spec_augment,
                                      speaker_spectrum, train_digit_model, transcribe_batch, validate_decodings, warp_mel, wer_interval)


# --- the split ---------------------------------------------------------------------------------------------------

def test_speakers_play_three_parts():
    assert set(TRAIN_SPEAKERS) | set(TEST_SPEAKERS) == {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}
    assert not set(TRAIN_SPEAKERS) & set(TEST_SPEAKERS) and set(VALIDATION_SPEAKERS) <= set(TRAIN_SPEAKERS)
    folds = digit_folds()
    assert [f.validation for f in folds] == [(s,) for s in VALIDATION_SPEAKERS]
    for f in folds:
        assert f.test == TEST_SPEAKERS and sorted(f.train + f.validation) == sorted(TRAIN_SPEAKERS) and not set(f.train) & set(f.validation)
    assert digit_split() == DigitSplit(TRAIN_SPEAKERS, ())
    for s in (*TEST_SPEAKERS, "nobody"):
        with pytest.raises(ValueError, match="never used for a choice"): digit_split(s)


def test_validation_speakers_are_the_loudest_and_the_quietest():
    from llmcourse.whisper_digits import _speaker_clips
    peak = {s: np.median([np.abs(a).max() for a, _ in _speaker_clips(s)]) for s in TRAIN_SPEAKERS}
    assert set(VALIDATION_SPEAKERS) == {max(peak, key=peak.get), min(peak, key=peak.get)}


# --- data ----------------------------------------------------------------------------------------------------------

def test_spec_augment_masks_bands_and_stretches():
    mel = torch.randn(3, 80, 240); before = mel.clone()
    out = spec_augment(mel, np.random.default_rng(0), max_band=10, max_stretch=20)
    assert out.shape == mel.shape and not torch.equal(out, mel)
    assert torch.equal(spec_augment(mel, np.random.default_rng(0), max_band=0, max_stretch=0), mel)  # no-width masks
    changed = (out != mel)
    for i in range(3):  # every changed value is the utterance's mean, and lies in a whole masked row or column
        assert_close(out[i][changed[i]], mel[i].mean().expand(int(changed[i].sum())))
        rows, cols = changed[i].all(1), changed[i].all(0)
        assert torch.equal(changed[i], rows[:, None] | cols[None, :])
    assert torch.equal(mel, before)  # the input is not modified


def test_normalize_peak_and_warp_mel():
    x = np.array([0.01, -0.04, 0.02], np.float32)
    y = normalize_peak(x, 0.5)
    assert y.dtype == np.float32 and np.abs(y).max() == pytest.approx(0.5) and y[1] < 0
    assert_close(y / y[1], x / x[1])  # only the gain changes
    assert not normalize_peak(np.zeros(5, np.float32)).any()  # silence stays silence, no division by zero
    ramp = torch.arange(80.0)[None, :, None].expand(3, 80, 7)  # (3, 80, 7): every bin holds its own index
    out = warp_mel(ramp, torch.tensor([1.0, 0.5, 1.25]))
    assert torch.equal(out[0], ramp[0])  # a factor of 1 changes nothing, exactly
    assert_close(out[1, :, 0], torch.arange(80.0) * 0.5)  # bin f reads bin f/2: interpolated between neighbours
    assert_close(out[2, :, 0], (torch.arange(80.0) * 1.25).clamp(max=79))  # reads above the top bin are held at it


def test_digit_utterances_peak_and_vtlp():
    test = DigitUtterances(TEST_SPEAKERS, augment=False)
    for seed in range(5):
        audio, text, who = test.sample(np.random.default_rng(seed))
        assert np.abs(audio).max() == pytest.approx(0.5) and who in TEST_SPEAKERS and 1 <= len(text.split()) <= 3
    as_recorded = DigitUtterances(["theo"], augment=False, peak=None)
    assert np.abs(as_recorded.sample(np.random.default_rng(0))[0]).max() < 0.2  # theo records quietly
    plain, warped = DigitUtterances(max_clips=20), DigitUtterances(max_clips=20, vtlp=0.2)
    a, b = plain.batch(4, np.random.default_rng(3)), warped.batch(4, np.random.default_rng(3))
    assert a[2] == b[2] and not torch.equal(a[0], b[0])  # the same utterances, stretched features
    c = DigitUtterances(max_clips=20, vtlp=0.2, augment=False).batch(4, np.random.default_rng(3))
    d = DigitUtterances(max_clips=20, augment=False).batch(4, np.random.default_rng(3))
    assert torch.equal(c[0], d[0])  # vtlp belongs to augmentation: never applied to evaluation utterances
    assert set(DigitUtterances().speakers) == set(TRAIN_SPEAKERS)  # by default the training speakers, never the test ones
    with pytest.raises(ValueError, match="No FSDD speaker"): DigitUtterances(["nobody"])
    with pytest.raises(ValueError, match="No FSDD speaker"): DigitUtterances([])


def test_eval_sets_are_fixed_and_level_independent():
    a, b = digit_utterances(TEST_SPEAKERS, 30), digit_utterances(TEST_SPEAKERS, 30)
    assert [t for _, t, _ in a] == [t for _, t, _ in b] and all(np.array_equal(x, y) for (x, _, _), (y, _, _) in zip(a, b))
    mel, texts, who = digit_eval_set(TEST_SPEAKERS, 30)
    mel_raw, texts_raw, who_raw = digit_eval_set(TEST_SPEAKERS, 30, peak=None)
    assert texts == texts_raw and who == who_raw and mel.shape == (30, 80, 240) and not torch.equal(mel, mel_raw)
    assert set(who) == set(TEST_SPEAKERS)
    assert texts != digit_eval_set(TEST_SPEAKERS, 30, seed=1)[1]


# --- the equaliser -------------------------------------------------------------------------------------------------

def test_mel_gain_and_speaker_spectrum():
    rng = np.random.default_rng(0)
    a = (rng.normal(0, 0.1, 16000) * np.sin(np.linspace(0, 30, 16000)) ** 2).astype(np.float32)  # noise with loud and quiet stretches
    louder = log_mel_spectrogram(a * np.sqrt(10))  # ten times the power: +1 in log10 before the floor
    assert_close(log_mel_spectrogram(a, gain=torch.ones(80)), louder, atol=1e-4, rtol=0)
    assert torch.equal(log_mel_spectrogram(a, gain=torch.zeros(80)), log_mel_spectrogram(a))
    base = speaker_spectrum([a, a[:8000]], peak=None)
    assert base.shape == (80,)
    assert_close(speaker_spectrum([a * 10, a[:8000] * 10], peak=None) - base, torch.full((80,), 2.0), atol=1e-3, rtol=0)
    assert_close(speaker_spectrum([a * 10], peak=0.5), speaker_spectrum([a], peak=0.5))  # the peak scaling removes the level
    with pytest.raises(ValueError, match="silent"): speaker_spectrum([])
    with pytest.raises(ValueError, match="silent"): speaker_spectrum([np.zeros(16000, np.float32), a[:100]])  # silence, too short
    assert_close(speaker_spectrum([a, np.zeros(16000, np.float32)], peak=None), speaker_spectrum([a], peak=None))  # silence is skipped


def test_equalizer_gains_and_equalised_sets():
    assert_close(equalizer_gains(["george"], reference=["george"])["george"], torch.zeros(80))  # a speaker against himself
    g = equalizer_gains(["lucas", "yweweler"], reference=["george", "nicolas"])
    assert set(g) == {"lucas", "yweweler"} and not torch.equal(g["lucas"], g["yweweler"])
    # the target is the reference speakers' average: their gains sum to zero
    ref = equalizer_gains(TRAIN_SPEAKERS)
    assert_close(torch.stack(list(ref.values())).sum(0), torch.zeros(80), atol=1e-4, rtol=0)
    bump = DigitUtterances(TEST_SPEAKERS, augment=False, gains={"jackson": torch.full((80,), 0.25)})
    drawn = digit_utterances(TEST_SPEAKERS, 20)
    mel_bump = bump.features(drawn)[0]
    mel, texts, who = digit_eval_set(TEST_SPEAKERS, 20)
    assert [not torch.equal(a, b) for a, b in zip(mel, mel_bump)] == [w == "jackson" for w in who]  # only jackson's change
    mel_eq, texts_eq, _ = digit_eval_set(TEST_SPEAKERS, 20, equalizer_db=30.0)
    assert texts == texts_eq and not torch.equal(mel, mel_eq)
    with pytest.raises(ValueError, match="shape"): DigitUtterances(["theo"], gains={"theo": torch.zeros(40)})


# --- training --------------------------------------------------------------------------------------------------------

def test_recipe_presets_and_the_schedule():
    slow = DigitRecipe.slow()
    assert slow.model_config() == WhisperModelConfig.digits(d_model=128, dropout=0.1) and slow.ema_decay == 0.999
    assert DigitRecipe.quick().steps == 40 and DigitRecipe.tiny().steps < DigitRecipe.quick().steps
    run = train_digit_model(DigitRecipe.tiny(), seed=0, device="cpu")
    rows = [r for r in run.history.rows if "lr" in r]
    r = DigitRecipe.tiny()
    # the logged rate is the one after each step: core.lr_multiplier at the next step
    assert_close(torch.tensor([x["lr"] for x in rows]), torch.tensor([r.lr * lr_multiplier(s, r.steps, r.warmup) for s in range(1, r.steps + 1)]),
                 rtol=1e-6, atol=0)


def test_train_digit_model_logs_validation_and_the_average():
    valid = digit_eval_set(digit_split("lucas").validation, 8, reference=digit_split("lucas").train)[:2]
    run = train_digit_model(DigitRecipe.tiny(), digit_split("lucas").train, seed=0, valid=valid, eval_every=3, device="cpu")
    assert [r["step"] for r in run.history.rows if "avg_valid_wer" in r] == [3, 6]
    moved = [not torch.equal(p, q) for p, q in zip(run.last.parameters(), run.averaged.parameters())]
    assert any(moved)  # the average lags the weights it follows
    assert run.weights("last") is run.last and run.weights("averaged") is run.averaged
    with pytest.raises(ValueError, match="kind"): run.weights("best")
    again = train_digit_model(DigitRecipe.tiny(), digit_split("lucas").train, seed=0, device="cpu")
    assert all(torch.equal(p, q) for p, q in zip(run.last.parameters(), again.last.parameters()))  # a seed fixes the run
    plain = train_digit_model(DigitRecipe(d_model=32, steps=2, batch_size=2, max_clips=10), seed=0, device="cpu")
    with pytest.raises(ValueError, match="no moving average"): plain.weights("averaged")


# --- the WER and its interval ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("p_wrong", [0.0, 0.1, 0.4])
def test_wer_interval_matches_scipy_bootstrap(p_wrong):
    from scipy.stats import bootstrap
    rng = np.random.default_rng(1)
    words = ["one", "two", "three"]
    refs = [" ".join(rng.choice(words, rng.integers(1, 4))) for _ in range(150)]
    hyps = [r if rng.random() >= p_wrong else " ".join(rng.choice(words, rng.integers(1, 4))) for r in refs]
    ci = wer_interval(refs, hyps)
    assert ci.wer == pytest.approx(word_error_rate(refs, hyps)) and ci.utterances == 150 and ci.low <= ci.wer <= ci.high
    errors = np.array([edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)]); n = np.array([len(r.split()) for r in refs])
    if p_wrong == 0: assert ci.low == ci.high == 0.0; return
    ref = bootstrap((errors, n), lambda e, w, axis=-1: e.sum(axis) / w.sum(axis), paired=True, vectorized=True, n_resamples=10_000,
                    method="percentile", random_state=3).confidence_interval
    assert abs(ci.low - ref.low) < 0.01 and abs(ci.high - ref.high) < 0.01, (ci, ref)  # different draws: within a point
    with pytest.raises(ValueError): wer_interval(refs, hyps[:-1])
    with pytest.raises(ValueError): wer_interval(refs, hyps, hyps[:-1])


def test_wer_interval_over_runs():
    rng = np.random.default_rng(2)
    words = ["one", "two", "three"]
    refs = [" ".join(rng.choice(words, rng.integers(1, 4))) for _ in range(120)]
    noisy = lambda p: [r if rng.random() >= p else " ".join(rng.choice(words, rng.integers(1, 4))) for r in refs]
    a, b, c = noisy(0.1), noisy(0.3), noisy(0.5)
    one, same = wer_interval(refs, a), wer_interval(refs, a, a, a)
    assert (same.wer, same.low, same.high, same.runs) == pytest.approx((one.wer, one.low, one.high, 3))  # identical runs: the seeds add nothing
    pooled = wer_interval(refs, a, b, c)
    assert pooled.wer == pytest.approx(np.mean([word_error_rate(refs, h) for h in (a, b, c)])) and pooled.runs == 3
    assert pooled.high - pooled.low > max(wer_interval(refs, h).high - wer_interval(refs, h).low for h in (a, b, c))  # runs that disagree widen it
    # a direct two-level bootstrap (seeds, then utterances), written here without wer_interval: the same interval within a point
    err = np.array([[edit_distance(r.split(), h.split()) for r, h in zip(refs, hs)] for hs in (a, b, c)]); n = np.array([len(r.split()) for r in refs])
    g, boots = np.random.default_rng(7), []
    for _ in range(4000):
        i, k = g.integers(0, len(refs), len(refs)), g.integers(0, 3, 3)
        boots.append(err[k][:, i].sum() / (3 * n[i].sum()))
    assert np.quantile(boots, [0.025, 0.975]) == pytest.approx([pooled.low, pooled.high], abs=0.01)


# --- choosing on validation speakers ---------------------------------------------------------------------------------

def test_decoding_candidates_and_bad_settings():
    grid = DigitDecoding.candidates()
    assert len(grid) == len(set(grid)) == 2 * 2 * 2 * len(STRETCH_SETS) * 4
    assert DigitDecoding(n_models=2, stretches=STRETCH_SETS[2]).votes == 10
    with pytest.raises(ValueError, match="weights"): DigitDecoding(weights="best")
    with pytest.raises(ValueError, match="at least one"): DigitDecoding(stretches=())


def _row(held_out, errors, **kw): return dict(held_out=held_out, models=[0], **asdict(DigitDecoding(**kw)), words=100, errors=errors)

@pytest.mark.parametrize("rows,want", [
    # the lowest WER pooled over folds wins, even when it is not the lowest on one fold
    ([_row("lucas", 10), _row("yweweler", 30), _row("lucas", 15, n_models=2), _row("yweweler", 20, n_models=2)], DigitDecoding(n_models=2)),
    # a tie goes to fewer votes
    ([_row("lucas", 10, stretches=(0.9, 1.0, 1.1)), _row("lucas", 10, n_models=2)], DigitDecoding(n_models=2)),
    # then to no equaliser, then to the scaled level, then to the averaged weights
    ([_row("lucas", 10, equalizer_db=30.0), _row("lucas", 10, peak=None)], DigitDecoding(peak=None)),
    ([_row("lucas", 10, peak=None), _row("lucas", 10, weights="last")], DigitDecoding(weights="last")),
    ([_row("lucas", 10, weights="last"), _row("lucas", 10)], DigitDecoding()),
])
def test_choose_decoding(rows, want):
    chosen, table = choose_decoding(rows)
    assert chosen == want
    assert table.WER.is_monotonic_increasing


def test_validate_decodings_scores_every_choice_of_models():
    models = [{"last": train_digit_model(DigitRecipe.tiny(), digit_split("lucas").train, seed=s, device="cpu").last} for s in (0, 1)]
    grid = DigitDecoding.candidates(n_models=(1, 2), stretches=STRETCH_SETS[:1], equalizer_db=(None,), peaks=(0.5,), weights=("last",))
    rows = validate_decodings({"lucas": models}, grid, n=10)
    assert [r["models"] for r in rows] == [[0], [1], [0, 1]]
    mel, texts, _ = digit_eval_set(["lucas"], 10, reference=digit_split("lucas").train)
    for r, ms in zip(rows, ([models[0]["last"]], [models[1]["last"]], [m["last"] for m in models])):  # against a direct decode
        hyps = ensemble_transcribe(ms, mel)
        assert r["errors"] == sum(edit_distance(t.split(), h.split()) for t, h in zip(texts, hyps))


def test_score_digit_models_runs_every_choice_of_seeds():
    models = [train_digit_model(DigitRecipe.tiny(), seed=s, device="cpu").last for s in (0, 1, 2)]
    one = score_digit_models(models, DigitDecoding(weights="last"), n=12)
    assert list(one.runs) == ["seeds 0", "seeds 1", "seeds 2"] and one.overall.runs == 3 and len(one.refs) == 12
    for k, m in zip(one.runs, models):  # each run is its model's greedy transcripts of the test utterances
        mel, texts, _ = digit_eval_set(TEST_SPEAKERS, 12)
        assert one.hyps[k] == transcribe_batch(m, mel) and one.runs[k].wer == pytest.approx(word_error_rate(texts, one.hyps[k]))
    assert one.overall.wer == pytest.approx(np.mean([c.wer for c in one.runs.values()]))
    assert sum(c.words for c in one.speakers.values()) == one.overall.words and set(one.speakers) == set(TEST_SPEAKERS)
    pairs = score_digit_models(models, DigitDecoding(weights="last", n_models=2), n=12)
    assert list(pairs.runs) == ["seeds 0+1", "seeds 0+2", "seeds 1+2"]


# --- saving and loading ------------------------------------------------------------------------------------------------

def _bad_files(tmp_path, good):
    "name -> (path, what the error must say): corrupt digit-model files made here."
    data = good.read_bytes()
    small = Whisper(WhisperModelConfig.digits(d_model=32))
    files = {"truncated": (data[: len(data) // 2], "truncated"), "empty": (b"", "truncated"), "text": (b"not a model at all", "truncated")}
    out = {}
    for name, (raw, says) in files.items():
        (tmp_path/f"{name}.pt").write_bytes(raw); out[name] = (tmp_path/f"{name}.pt", says)
    torch.save(small.state_dict(), tmp_path/"bare.pt"); out["bare state dict"] = (tmp_path/"bare.pt", "not a file written by save_digit_model")
    saved = torch.load(good, weights_only=True)
    torch.save({"config": {**saved["config"], "width": 3}, "state_dict": saved["state_dict"]}, tmp_path/"odd_config.pt")
    out["unknown config field"] = (tmp_path/"odd_config.pt", "not a WhisperModelConfig")
    torch.save({"config": asdict(WhisperModelConfig.digits(d_model=64)), "state_dict": saved["state_dict"]}, tmp_path/"mismatch.pt")
    out["weights of another size"] = (tmp_path/"mismatch.pt", "do not fit the model its config describes")
    state = dict(saved["state_dict"]); state.pop(next(iter(state)))
    torch.save({"config": saved["config"], "state_dict": state}, tmp_path/"missing.pt")
    out["a missing tensor"] = (tmp_path/"missing.pt", "do not fit the model its config describes")
    return out

def test_load_digit_model_rejects_bad_files(tmp_path):
    model = Whisper(WhisperModelConfig.digits(d_model=48))
    good = save_digit_model(model, tmp_path/"good.pt")
    again = load_digit_model(good, config=WhisperModelConfig.digits(d_model=48))
    for p, q in zip(model.parameters(), again.parameters()): assert_close(p, q, atol=1e-3, rtol=1e-3)  # float16 on disk
    for name, (path, says) in _bad_files(tmp_path, good).items():
        with pytest.raises(ValueError) as e: load_digit_model(path)
        assert str(path) in str(e.value) and says in str(e.value), (name, str(e.value))
    with pytest.raises(ValueError, match=r"another size: d_model=48 \(expected 128\)"): load_digit_model(good, config=DigitRecipe.slow().model_config())
    with pytest.raises(FileNotFoundError, match="missing.pt"): load_digit_model(tmp_path/"nowhere"/"missing.pt")


def test_save_digit_model_is_atomic(tmp_path, monkeypatch):
    old, new = Whisper(WhisperModelConfig.digits(d_model=32)), Whisper(WhisperModelConfig.digits(d_model=48))
    path = save_digit_model(old, tmp_path/"m.pt")
    real_save = torch.save
    def dies_half_way(obj, f, *a, **k):
        real_save(obj, f, *a, **k); raw = open(f, "rb").read(); open(f, "wb").write(raw[: len(raw) // 2])
        raise KeyboardInterrupt("killed while saving")
    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt): save_digit_model(new, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_digit_model(path).cfg.d_model == 32  # the old file is whole; the half-written one never took its name


# --- the validation record -------------------------------------------------------------------------------------------

# the record is written by bench/10a_whisper_digits/digits_validation.py (hours of one core) and ships in the package
def test_validation_record_and_its_choice():
    validation = json.loads(asset_path("whisper_digits", "validation.json").read_text())
    chosen = DigitDecoding(**validation["chosen"])
    assert DigitRecipe(**validation["recipe"]) == DigitRecipe.slow() and set(validation["folds"]) == set(VALIDATION_SPEAKERS)
    for held_out, train in validation["folds"].items(): assert set(train) == set(TRAIN_SPEAKERS) - {held_out}  # never a test speaker
    best = validation["table"][0]  # the table is sorted: the chosen setting first, with the lowest validation WER
    assert DigitDecoding(best["weights"], best["peak"], best["n_models"], tuple(best["stretches"]), best["equalizer_db"]) == chosen
    assert best["WER"] == min(r["WER"] for r in validation["table"])
    assert len(validation["table"]) == len(DigitDecoding.candidates(n_models=range(1, len(validation["seeds"]) + 1)))


# --- the final models and their one scoring --------------------------------------------------------------------------

# the models are trained by bench/10a_whisper_digits/digits_final.py and the test speakers scored once by digits_test.py,
# which records the errors of each run and a margin: twice the words that decoding the same models in float64 changed
def test_final_models_reproduce_the_recorded_test_score():
    record = json.loads(asset_path("whisper_digits", "test.json").read_text())
    validation = json.loads(asset_path("whisper_digits", "validation.json").read_text())
    chosen = DigitDecoding(**record["chosen"])
    assert chosen == DigitDecoding(**validation["chosen"])  # scored with the decoding validation chose, nothing else
    models = [load_digit_model(asset_path("whisper_digits", f"digits_s{s}.pt"), DigitRecipe.slow().model_config()) for s in range(3)]
    score = score_digit_models(models, chosen)
    assert set(score.runs) == set(record["runs"])
    for name, ci in score.runs.items():
        assert ci.words == record["runs"][name]["words"]
        errors = round(ci.wer * ci.words)
        assert abs(errors - record["runs"][name]["errors"]) <= record["margin_words"], (name, errors, record["runs"][name])
    assert abs(score.overall.wer - record["test"]["wer"]) * score.overall.words * score.overall.runs <= record["margin_words"] * score.overall.runs
