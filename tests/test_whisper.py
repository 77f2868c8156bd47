"""Lesson 10 (`llmcourse.whisper`): mel parity with transformers' WhisperFeatureExtractor, greedy decoding equal to
`WhisperForConditionalGeneration.generate` on the same random weights, bad input, and Whisper tiny.en through faster-whisper."""
import numpy as np
import pytest
import torch
from llmcourse.core import asset_path
from torch.testing import assert_close

from llmcourse.whisper import (DigitTokenizer, N_SAMPLES, SAMPLE_RATE, WhisperModelConfig, beam_search_decode, digit_recording,
                               edit_distance, greedy_decode, hf_generation_config, load_audio, log_mel_spectrogram, mel_filters,
                               normalize_digits, pad_or_trim, resample, transcribe, whisper_from_hf, whisper_sinusoids,
                               word_error_rate)

transformers = pytest.importorskip("transformers")
sf = pytest.importorskip("soundfile")


def _fe(n_mels=80):
    return transformers.WhisperFeatureExtractor(feature_size=n_mels)


# --- audio in ---------------------------------------------------------------------------------------------------

def test_load_wav_and_flac_resample(tmp_path):
    t = np.arange(8000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # 1 s of 440 Hz at 8 kHz
    for ext in ("wav", "flac"):
        sf.write(tmp_path / f"tone.{ext}", tone, 8000)
        x = load_audio(tmp_path / f"tone.{ext}")
        assert x.dtype == np.float32 and len(x) == 16000
        spec = np.abs(np.fft.rfft(x[2000:14000]))
        assert abs(np.argmax(spec) * 16000 / 12000 - 440) < 3  # the pitch survives resampling
    stereo = np.stack([tone, -tone], 1)
    sf.write(tmp_path / "stereo.wav", stereo, 8000)
    assert np.abs(load_audio(tmp_path / "stereo.wav")).max() < 1e-3  # channels are averaged


def test_not_audio_and_missing(tmp_path):
    p = tmp_path / "notes.wav"; p.write_text("not a sound")
    with pytest.raises(ValueError, match="not an audio file"): load_audio(p)
    with pytest.raises(FileNotFoundError): load_audio(tmp_path / "missing.flac")


def test_wrong_sample_rate():
    with pytest.raises(ValueError, match="resample first"): log_mel_spectrogram(np.zeros(8000), sample_rate=8000)
    with pytest.raises(ValueError, match="sample_rate"): transcribe(np.zeros(8000, np.float32))
    with pytest.raises(ValueError): resample(np.zeros(10), 0)


def test_pad_or_trim():
    assert pad_or_trim(np.ones(10), 4).shape == (4,)
    assert pad_or_trim(np.ones((2, 3)), 5)[:, 3:].sum() == 0
    assert pad_or_trim(torch.ones(2, 3), 5).shape == (2, 5)


# --- the log-mel spectrogram -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_transformers(n_mels):
    from transformers.audio_utils import mel_filter_bank
    ref = mel_filter_bank(num_frequency_bins=201, num_mel_filters=n_mels, min_frequency=0.0, max_frequency=8000.0,
                          sampling_rate=16000, norm="slaney", mel_scale="slaney")
    assert_close(mel_filters(n_mels), torch.from_numpy(ref.T).float(), atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", ["fsdd", "noise", "tone", "silence", "loud", "long"])
@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_feature_extractor(kind, n_mels):
    """Max abs error below 1e-4 against WhisperFeatureExtractor (measured: about 1e-6 on FSDD clips)."""
    rng = np.random.default_rng(0)
    if kind == "fsdd":
        from llmcourse.data import load_fsdd
        x = load_audio(load_fsdd().frame.path.iloc[123])
    elif kind == "noise": x = rng.normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32)
    elif kind == "tone": x = np.sin(2 * np.pi * 1000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    elif kind == "silence": x = np.zeros(SAMPLE_RATE, np.float32)
    elif kind == "loud": x = np.clip(rng.normal(0, 3, SAMPLE_RATE), -1, 1).astype(np.float32)
    else: x = rng.normal(0, 0.05, 35 * SAMPLE_RATE).astype(np.float32)  # longer than 30 s: both trim
    ref = torch.from_numpy(_fe(n_mels)(x, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0])
    ours = log_mel_spectrogram(pad_or_trim(x), n_mels=n_mels)
    assert ours.shape == ref.shape == (n_mels, 3000)
    assert (ours - ref).abs().max().item() < 1e-4


def test_log_mel_batch_is_per_clip():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 0.5, N_SAMPLES).astype(np.float32), rng.normal(0, 0.001, N_SAMPLES).astype(np.float32)
    batch = log_mel_spectrogram(np.stack([a, b]))
    assert_close(batch[0], log_mel_spectrogram(a)); assert_close(batch[1], log_mel_spectrogram(b))  # floors are per clip


# --- the model and decoding -------------------------------------------------------------------------------------

def _random_pair(seed, std=0.3, **kw):
    torch.manual_seed(seed)
    cfg = WhisperModelConfig.tiny(**kw)
    hf = transformers.WhisperForConditionalGeneration(cfg.to_hf()).eval()
    with torch.no_grad():
        for p in hf.parameters(): p.normal_(0, std)
    return cfg, hf, whisper_from_hf(hf)


def test_whisper_sinusoids_match_openai():
    def openai(length, channels, max_timescale=10000):
        inc = np.log(max_timescale) / (channels // 2 - 1)
        inv = torch.exp(-inc * torch.arange(channels // 2))
        t = torch.arange(length)[:, None] * inv[None, :]
        return torch.cat([torch.sin(t), torch.cos(t)], dim=1)
    for L, C in [(10, 8), (1500, 384), (150, 64)]: assert_close(whisper_sinusoids(L, C), openai(L, C), atol=2e-4, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_logits_match_transformers(seed):
    cfg, hf, ours = _random_pair(seed, std=0.1)
    mel = torch.randn(2, 80, 2 * cfg.n_audio_ctx)
    tokens = torch.randint(0, cfg.n_vocab, (2, 7))
    with torch.no_grad():
        assert_close(ours(mel, tokens), hf(input_features=mel, decoder_input_ids=tokens).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("suppress", [(), (1, 2)])
def test_greedy_decoding_equals_generate(seed, suppress):
    cfg, hf, ours = _random_pair(seed, n_audio_ctx=24 + 4 * seed)
    tok = DigitTokenizer()
    suppressed = [tok.sot, tok.en, tok.transcribe, tok.no_timestamps, *suppress]
    hf_generation_config(hf, tok, suppress_tokens=suppressed)
    mel = torch.randn(3, 80, 2 * cfg.n_audio_ctx) * 2
    ref = hf.generate(mel, language="en", task="transcribe", max_new_tokens=8)
    got = greedy_decode(ours, mel, tok.sot_sequence, tok.eot, max_new_tokens=8, suppress_tokens=suppressed,
                        begin_suppress_tokens=[tok.eot])
    assert got[:, :4].tolist() == [tok.sot_sequence] * 3
    def until_eot(rows): return [r[:r.index(tok.eot)] if tok.eot in r else r for r in rows.tolist()]
    assert until_eot(got[:, 4:]) == until_eot(ref)  # transformers leaves out the final eot when every row has ended
    assert got.size(1) - 4 >= ref.size(1)
    assert not set(got[:, 4:].flatten().tolist()) & set(suppress)


def test_beam_search():
    cfg, hf, ours = _random_pair(0)
    tok = DigitTokenizer()
    mel = torch.randn(1, 80, 2 * cfg.n_audio_ctx) * 2
    kw = dict(max_new_tokens=6, suppress_tokens=tok.sot_sequence, begin_suppress_tokens=[tok.eot])
    g = greedy_decode(ours, mel, tok.sot_sequence, tok.eot, **kw)[0].tolist()
    one = beam_search_decode(ours, mel, tok.sot_sequence, tok.eot, beam_size=1, **kw).tolist()
    assert one == g[:len(one)]  # one beam is greedy decoding (greedy pads finished rows, so compare up to eot)
    best = beam_search_decode(ours, mel, tok.sot_sequence, tok.eot, beam_size=4, **kw)
    assert best[:4].tolist() == tok.sot_sequence and best[4] != tok.eot  # eot is not allowed first
    with pytest.raises(ValueError, match="one clip"): beam_search_decode(ours, mel.repeat(2, 1, 1), tok.sot_sequence, tok.eot)


def test_wrong_input_length():
    cfg, hf, ours = _random_pair(0)
    with pytest.raises(ValueError, match="pad_or_trim"): ours.encoder(torch.randn(1, 80, 2 * cfg.n_audio_ctx + 2))


def test_wer_and_edit_distance():
    jiwer = pytest.importorskip("jiwer")
    rng = np.random.default_rng(0)
    words = ["one", "two", "three", "four"]
    refs = [" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(50)]
    hyps = [" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(50)]
    assert abs(word_error_rate(refs, hyps) - jiwer.wer(refs, hyps)) < 1e-12
    assert edit_distance("kitten", "sitting") == 3
    assert normalize_digits("Zero, 1, two.") == "zero one two"


# --- a real model: Whisper tiny.en through faster-whisper --------------------------------------------------------

def test_faster_whisper_transcribes_a_real_recording(tmp_path):
    pytest.importorskip("faster_whisper")
    audio, text = digit_recording("theo", [3, 1, 4, 1, 5, 9, 2, 6], take=2)
    path = tmp_path / "pi.flac"; sf.write(path, audio, SAMPLE_RATE)
    result = transcribe(path, word_timestamps=True)
    assert word_error_rate([text], [normalize_digits(result.text)]) <= 0.25, result.text
    assert result.segments and all(s["end"] > s["start"] >= 0 for s in result.segments)
    starts = [w["start"] for s in result.segments for w in s["words"]]
    assert starts == sorted(starts) and result.segments[-1]["end"] <= result.duration + 0.5
    assert result.rtf > 0


def test_spec_augment_masks_bands_and_stretches():
    from llmcourse.whisper import spec_augment
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
    from llmcourse.whisper import normalize_peak, warp_mel
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
    from llmcourse.whisper import DigitUtterances, TEST_SPEAKERS
    test = DigitUtterances(TEST_SPEAKERS, augment=False)
    for _ in range(5):
        audio, _ = test.sample(np.random.default_rng(_))
        assert np.abs(audio).max() == pytest.approx(0.5)  # un-augmented utterances sit at the peak exactly
    as_recorded = DigitUtterances(["theo"], augment=False, peak=None)
    assert np.abs(as_recorded.sample(np.random.default_rng(0))[0]).max() < 0.2  # theo records quietly
    plain, warped = DigitUtterances(max_clips=20), DigitUtterances(max_clips=20, vtlp=0.2)
    a, b = plain.batch(4, np.random.default_rng(3)), warped.batch(4, np.random.default_rng(3))
    assert a[2] == b[2] and not torch.equal(a[0], b[0])  # the same utterances, stretched features
    c = DigitUtterances(max_clips=20, vtlp=0.2, augment=False).batch(4, np.random.default_rng(3))
    d = DigitUtterances(max_clips=20, augment=False).batch(4, np.random.default_rng(3))
    assert torch.equal(c[0], d[0])  # vtlp belongs to augmentation: never applied to test utterances


def test_mel_gain_and_speaker_spectrum():
    from llmcourse.whisper import speaker_spectrum
    rng = np.random.default_rng(0)
    a = (rng.normal(0, 0.1, 16000) * np.sin(np.linspace(0, 30, 16000)) ** 2).astype(np.float32)  # noise with loud and quiet stretches
    louder = log_mel_spectrogram(a * np.sqrt(10))  # ten times the power: +1 in log10 before the floor
    assert_close(log_mel_spectrogram(a, gain=torch.ones(80)), louder, atol=1e-4, rtol=0)
    assert torch.equal(log_mel_spectrogram(a, gain=torch.zeros(80)), log_mel_spectrogram(a))
    g = torch.linspace(-1, 1, 80)
    both = log_mel_spectrogram(np.stack([a, a[::-1].copy()]), gain=torch.stack([g, -g]))  # one curve per row
    assert_close(both[0], log_mel_spectrogram(a, gain=g)); assert_close(both[1], log_mel_spectrogram(a[::-1].copy(), gain=-g))
    base = speaker_spectrum([a, a[:8000]], peak=None)
    assert base.shape == (80,)
    assert_close(speaker_spectrum([a * 10, a[:8000] * 10], peak=None) - base, torch.full((80,), 2.0), atol=1e-3, rtol=0)
    assert_close(speaker_spectrum([a * 10], peak=0.5), speaker_spectrum([a], peak=0.5))  # the peak scaling removes the level
    with pytest.raises(ValueError, match="silent"): speaker_spectrum([])
    with pytest.raises(ValueError, match="silent"): speaker_spectrum([np.zeros(16000, np.float32), a[:100]])  # silence, too short
    assert_close(speaker_spectrum([a, np.zeros(16000, np.float32)], peak=None), speaker_spectrum([a], peak=None))  # silence is skipped


def test_equalizer_gains_and_equalised_utterances():
    from llmcourse.whisper import TEST_SPEAKERS, DigitUtterances, digit_test_set, digit_test_speakers, equalizer_gains
    assert_close(equalizer_gains(["george"], reference=["george"])["george"], torch.zeros(80))  # a speaker against himself
    g = equalizer_gains(["jackson", "theo"], reference=["george", "lucas"])
    assert set(g) == {"jackson", "theo"} and not torch.equal(g["jackson"], g["theo"])
    bump = DigitUtterances(TEST_SPEAKERS, augment=False, gains={"jackson": torch.full((80,), 0.25)})
    mel_bump, _, texts_bump = bump.batch(20, np.random.default_rng(1234))  # digit_test_set's draws
    mel, texts = digit_test_set(20)
    who = digit_test_speakers(20)
    assert texts_bump == texts and sorted(set(who)) == ["jackson", "theo"]
    assert [not torch.equal(a, b) for a, b in zip(mel, mel_bump)] == [w == "jackson" for w in who]  # only jackson's change
    mel_eq, texts_eq = digit_test_set(20, equalize=True)
    assert texts == texts_eq and mel.shape == mel_eq.shape and not torch.equal(mel, mel_eq)
    with pytest.raises(ValueError, match="shape"): DigitUtterances(["theo"], gains={"theo": torch.zeros(40)})


def test_train_digits_logs_the_averaged_model():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from llmcourse.whisper import DigitUtterances, Whisper, digit_test_set, train_digits
    torch.manual_seed(0)
    model = Whisper(WhisperModelConfig.digits(d_model=32))
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    hist = train_digits(model, DigitUtterances(max_clips=20, vtlp=0.2), digit_test_set(8), steps=6, batch_size=4,
                        warmup=2, eval_every=3, averaged=averaged)
    assert [r["step"] for r in hist.rows if "avg_test_wer" in r] == [3, 6]
    assert averaged.n_averaged.item() == 6
    moved = [not torch.equal(p, q) for p, q in zip(model.parameters(), averaged.module.parameters())]
    assert any(moved)  # the average lags the weights it follows


def test_shipped_digit_models_and_ensemble(tmp_path):
    from llmcourse.whisper import (load_digit_model, save_digit_model, digit_test_set, evaluate, ensemble_transcribe,
                                   transcribe_batch)
    from pathlib import Path
    folder = asset_path("whisper_digits")
    models = [load_digit_model(folder/f) for f in ("digits.pt", "digits_s1.pt", "digits_s2.pt")]
    mel, texts = digit_test_set(200)
    tok = DigitTokenizer()
    singles = []
    for m in models:
        wer, hyps = evaluate(m, mel, texts, tok)
        assert wer <= 0.23, (wer, hyps[:5])  # measured 21.0%, 20.5%, 17.1%; an untrained model makes ~90%
        singles.append(wer)
    assert ensemble_transcribe(models[:1], mel[:30], tok) == transcribe_batch(models[0], mel[:30], tok)
    votes = ensemble_transcribe(models, mel, tok, warps=(0.85, 0.92, 1.0, 1.08, 1.15))
    ensemble_wer = word_error_rate(texts, votes)
    assert ensemble_wer <= 0.18 and ensemble_wer < np.mean(singles)  # measured 16.6% against a mean of 19.5%
    eq_mel, eq_texts = digit_test_set(200, equalize=True)  # each held-out speaker equalised to the training voices
    assert eq_texts == texts
    eq_singles = [evaluate(m, eq_mel, texts, tok)[0] for m in models]
    assert all(e < s for e, s in zip(eq_singles, singles)), (eq_singles, singles)  # measured 16.8%, 16.3%, 11.4%
    eq_wer = word_error_rate(texts, ensemble_transcribe(models, eq_mel, tok, warps=(0.85, 0.92, 1.0, 1.08, 1.15)))
    assert eq_wer <= 0.15, eq_wer  # the lesson's target; measured 11.7%
    model = models[0]
    again = load_digit_model(save_digit_model(model, tmp_path/"m.pt"))
    assert_close(again(mel[:2], torch.tensor([DigitTokenizer().sot_sequence] * 2)), model(mel[:2], torch.tensor([DigitTokenizer().sot_sequence] * 2)))
    torch.save(model.state_dict(), tmp_path/"bare.pt")
    with pytest.raises(ValueError, match="save_digit_model"): load_digit_model(tmp_path/"bare.pt")
