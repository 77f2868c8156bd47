"""Lesson 10 (`llmcourse.whisper`): mel parity with transformers' WhisperFeatureExtractor, greedy decoding equal to
`WhisperForConditionalGeneration.generate` on the same random weights, bad input, and Whisper tiny.en through faster-whisper.
The digits lab (lesson 10a, `llmcourse.whisper_digits`) is tested in test_whisper_digits.py."""
import numpy as np
import pytest
import torch
from llmcourse.core import asset_path
from torch.testing import assert_close

import soundfile as sf
import transformers
from llmcourse.data import AudioError, load_audio
from llmcourse.whisper import (DigitTokenizer, N_SAMPLES, SAMPLE_RATE, WhisperModelConfig, beam_search_decode, digit_recording,
                               edit_distance, hf_generation_config, log_mel_spectrogram, mel_filters, normalize_digits,
                               pad_or_trim, transcribe, whisper_from_hf, whisper_greedy_decode, whisper_sinusoids, word_error_rate)


def _fe(n_mels=80):
    return transformers.WhisperFeatureExtractor(feature_size=n_mels)


# --- audio in ---------------------------------------------------------------------------------------------------

def test_audio_comes_through_lesson_01s_loader(tmp_path):
    t = np.arange(8000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # 1 s of 440 Hz at 8 kHz
    sf.write(tmp_path / "tone.wav", tone, 8000, subtype="FLOAT")
    x = load_audio(tmp_path / "tone.wav")
    assert x.dtype == np.float32 and len(x) == SAMPLE_RATE  # resampled to Whisper's rate
    # transcribe reads files with the same loader, so a bad file gets its error naming the file
    (tmp_path / "notes.wav").write_text("not a sound")
    with pytest.raises(AudioError, match="notes.wav"): transcribe(tmp_path / "notes.wav")
    # samples with their rate are resampled the same way as a file of that rate
    from llmcourse.whisper import _to_whisper_rate
    assert_close(torch.from_numpy(_to_whisper_rate(tone, 8000)), torch.from_numpy(x), atol=1e-6, rtol=0)


def test_wrong_sample_rate():
    with pytest.raises(ValueError, match="resample first"): log_mel_spectrogram(np.zeros(8000), sample_rate=8000)
    with pytest.raises(ValueError, match="sample_rate"): transcribe(np.zeros(8000, np.float32))
    with pytest.raises(ValueError, match="positive"): transcribe(np.zeros(8000, np.float32), sample_rate=0)


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
    got = whisper_greedy_decode(ours, mel, tok.sot_sequence, tok.eot, max_new_tokens=8, suppress_tokens=suppressed,
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
    g = whisper_greedy_decode(ours, mel, tok.sot_sequence, tok.eot, **kw)[0].tolist()
    one = beam_search_decode(ours, mel, tok.sot_sequence, tok.eot, beam_size=1, **kw).tolist()
    assert one == g[:len(one)]  # one beam is greedy decoding (greedy pads finished rows, so compare up to eot)
    best = beam_search_decode(ours, mel, tok.sot_sequence, tok.eot, beam_size=4, **kw)
    assert best[:4].tolist() == tok.sot_sequence and best[4] != tok.eot  # eot is not allowed first
    with pytest.raises(ValueError, match="one clip"): beam_search_decode(ours, mel.repeat(2, 1, 1), tok.sot_sequence, tok.eot)


def test_wrong_input_length():
    cfg, hf, ours = _random_pair(0)
    with pytest.raises(ValueError, match="pad_or_trim"): ours.encoder(torch.randn(1, 80, 2 * cfg.n_audio_ctx + 2))


def test_wer_and_edit_distance():
    import jiwer
    rng = np.random.default_rng(0)
    words = ["one", "two", "three", "four"]
    refs = [" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(50)]
    hyps = [" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(50)]
    assert abs(word_error_rate(refs, hyps) - jiwer.wer(refs, hyps)) < 1e-12
    assert edit_distance("kitten", "sitting") == 3
    assert normalize_digits("Zero, 1, two.") == "zero one two"


# --- a real model: Whisper tiny.en through faster-whisper --------------------------------------------------------

def test_faster_whisper_transcribes_a_real_recording(tmp_path):
    audio, text = digit_recording("theo", [3, 1, 4, 1, 5, 9, 2, 6], take=2)
    path = tmp_path / "pi.flac"; sf.write(path, audio, SAMPLE_RATE)
    result = transcribe(path, word_timestamps=True)
    assert word_error_rate([text], [normalize_digits(result.text)]) <= 0.25, result.text
    assert result.segments and all(s["end"] > s["start"] >= 0 for s in result.segments)
    starts = [w["start"] for s in result.segments for w in s["words"]]
    assert starts == sorted(starts) and result.segments[-1]["end"] <= result.duration + 0.5
    assert result.rtf > 0
