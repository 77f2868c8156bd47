"Parity sweeps, properties and bad input for lesson 08 (`llmcourse.t5`); references are `transformers`' T5 and T5's published counts."
import random

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.testing import assert_close
from transformers import T5ForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5Attention

from llmcourse.t5 import (T5Size, build_t5, encode_t5_batch, mixing_rates, mixture_batches, random_spans_noise_mask,
                          relative_position_bias, relative_position_bucket, relative_positions, resolve_sentinels,
                          sentinel_ids, span_corrupt, text_to_text, train_t5, train_t5_tokenizer, exact_match_by_task)
from llmcourse.transformer import toy_examples

SENTINELS = list(range(-1, -101, -1))  # 100 distinct stand-in sentinel ids


# --- relative position buckets: equal to transformers' T5Attention._relative_position_bucket -----------------------

@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (16, 64), (8, 20), (64, 256), (10, 50), (32, 32), (6, 1000)])
def test_bucket_matches_transformers(bidirectional, num_buckets, max_distance):
    r = torch.arange(-2000, 2001)
    want = T5Attention._relative_position_bucket(r, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
    got = relative_position_bucket(r, bidirectional, num_buckets, max_distance)
    assert torch.equal(got, want), (got != want).nonzero()[:5]
    assert got.min() >= 0 and got.max() < num_buckets


def test_bucket_on_a_matrix_and_wrong_direction_differs():
    rel = relative_positions(37, 53)  # (Tq, Tk): key - query
    assert rel.shape == (37, 53) and rel[3, 10] == 7
    for bidi in (True, False):
        assert torch.equal(relative_position_bucket(rel, bidi), T5Attention._relative_position_bucket(rel, bidirectional=bidi))
    # the test can fail: the causal buckets are not the bidirectional ones
    assert not torch.equal(relative_position_bucket(rel, False), T5Attention._relative_position_bucket(rel, bidirectional=True))
    assert not torch.equal(relative_position_bucket(-rel, False), T5Attention._relative_position_bucket(rel, bidirectional=False))


@pytest.mark.parametrize("q,k", [(1, 1), (5, 9), (20, 7), (200, 200)])
def test_position_bias_matches_compute_bias(q, k):
    torch.manual_seed(q * 1000 + k)
    cfg = T5Size.tiny(relative_attention_num_buckets=16, relative_attention_max_distance=40).to_hf(50)
    m = T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for stack, bidi in [(m.encoder, True), (m.decoder, False)]:
            attn = stack.block[0].layer[0].SelfAttention
            torch.nn.init.normal_(attn.relative_attention_bias.weight)
            assert_close(relative_position_bias(attn.relative_attention_bias, q, k, bidi, 40), attn.compute_bias(q, k))


# --- span corruption ----------------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(length=st.integers(2, 600), seed=st.integers(0, 2**31), density=st.sampled_from([0.15, 0.05, 0.3, 0.5]),
       mean_span=st.sampled_from([3.0, 1.0, 2.5, 8.0]))
def test_every_token_exactly_once(length, seed, density, mean_span):
    ids = list(range(1000, 1000 + length))  # distinct, so "exactly once" is literal
    many = list(range(-1, -(length + 2), -1))  # enough sentinels for any mask of this length
    inp, tgt = span_corrupt(ids, many, density, mean_span, random.Random(seed))
    sents = set(many)
    assert resolve_sentinels(inp, tgt, many) == ids
    kept = [t for t in inp if t not in sents] + [t for t in tgt if t not in sents]
    assert sorted(kept) == ids and len(kept) == len(set(kept))
    # the sentinels come in order, once each in the input and once each in the target
    s_in, s_out = [t for t in inp if t in sents], [t for t in tgt if t in sents]
    assert s_in == s_out == list(range(-1, -(len(s_in) + 1), -1))


@settings(max_examples=200, deadline=None)
@given(length=st.integers(2, 2000), seed=st.integers(0, 2**31))
def test_counts_follow_t5(length, seed):
    "The counts of T5's random_spans_noise_mask (as in transformers' run_t5_mlm_flax.py), for the default settings."
    import numpy as np
    m = random_spans_noise_mask(length, 0.15, 3.0, random.Random(seed))
    n_noise = min(max(int(np.round(length * 0.15)), 1), length - 1)
    n_spans = max(int(np.round(min(n_noise, length - n_noise) / 3.0)), 1)
    starts = sum(1 for a, b in zip([False] + m, m) if b and not a)
    assert (len(m), sum(m), starts) == (length, n_noise, n_spans)
    assert not m[0] and m[-1]  # kept first, noise last


def test_published_lengths_for_512_tokens():
    "transformers' T5 pretraining example: 568 raw tokens give 512 inputs and 114 targets (with </s>) at 0.15 / 3."
    inp, tgt = span_corrupt(list(range(568)), SENTINELS, rng=random.Random(0))
    assert (len(inp) + 1, len(tgt) + 1) == (512, 114)


def test_paper_example():
    words = "Thank you for inviting me to your party last week .".split()
    inp, tgt = span_corrupt(words, ["<X>", "<Y>", "<Z>"], mask=[w in ("for", "inviting", "last") for w in words])
    assert " ".join(inp) == "Thank you <X> me to your party <Y> week ."
    assert " ".join(tgt) == "<X> for inviting <Y> last <Z>"


def test_span_corruption_bad_input():
    with pytest.raises(ValueError, match="at least 2 tokens"): random_spans_noise_mask(1)
    with pytest.raises(ValueError, match="noise_density"): random_spans_noise_mask(10, noise_density=1.5)
    with pytest.raises(ValueError, match="mean_span_length"): random_spans_noise_mask(10, mean_span_length=0)
    with pytest.raises(ValueError, match="sentinels"): span_corrupt(list(range(500)), SENTINELS[:3], rng=random.Random(0))
    with pytest.raises(ValueError, match="mask has 2 entries"): span_corrupt([1, 2, 3], SENTINELS, mask=[True, False])


# --- mixture --------------------------------------------------------------------------------------------------------

def test_mixing_rates():
    assert mixing_rates({"a": 2, "b": 6}) == pytest.approx({"a": 0.25, "b": 0.75})
    assert mixing_rates({"a": 2, "b": 6, "c": 100}, limit=6) == pytest.approx({"a": 2 / 14, "b": 6 / 14, "c": 6 / 14})
    assert mixing_rates({"a": 1, "b": 10**6}, temperature=1e6) == pytest.approx({"a": 0.5, "b": 0.5}, abs=1e-3)
    with pytest.raises(ValueError, match="at least one example"): mixing_rates({})
    with pytest.raises(ValueError, match="temperature"): mixing_rates({"a": 1}, temperature=0)


def test_mixture_batches_visit_every_example_per_pass():
    by_task = {"a": [("a", i, i) for i in range(10)], "b": [("b", i, i) for i in range(7)]}
    it = mixture_batches(by_task, {"a": 1.0, "b": 0.0}, batch_size=5, seed=3)
    seen = [e[1] for _ in range(2) for e in next(it)]
    assert sorted(seen) == list(range(10))  # one pass over task a, each example once
    b1, b2 = next(mixture_batches(by_task, {"a": .5, "b": .5}, 8, seed=1)), next(mixture_batches(by_task, {"a": .5, "b": .5}, 8, seed=1))
    assert b1 == b2 and len(b1) == 8


# --- tokenizer, batches, a short training run ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    ex = text_to_text(toy_examples(("reverse", "sort"), 300, max_len=6))
    texts = [t for _, i, o in ex for t in (i, o)] + ["sst2 sentence: a fine film", "positive", "negative"] * 20
    return train_t5_tokenizer(texts, vocab_size=36, extra_ids=10, out_dir=tmp_path_factory.mktemp("spm"))


def test_tokenizer_ids_and_sentinels(tok):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=tok.sp_model_file)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, len(tok)) == (0, 1, 2, 46)
    assert sentinel_ids(tok) == list(range(45, 35, -1))
    for text in ["reverse: 12345", "sort: 907", "sst2 sentence: a fine film"]:
        assert tok(text).input_ids == sp.encode(text) + [1]
    assert all(len(p.strip("▁")) <= 1 for p in tok.tokenize("1234567890"))  # split_digits: one digit per token


def test_encode_batch_pads_and_cuts(tok):
    b = encode_t5_batch(tok, [("x", "reverse: 123", "321"), ("x", [5, 6, 7, 8, 9], [40, 5]), ("x", "sort: " + "9" * 100, "9")],
                        max_input_len=10, max_target_len=4)
    assert b["input_ids"].shape == (3, 10) and b["labels"].shape[0] == 3
    assert b["input_ids"][1, :6].tolist() == [5, 6, 7, 8, 9, 1] and b["input_ids"][2, -1] == 1  # cut, </s> kept
    assert b["labels"][1, :3].tolist() == [40, 5, 1] and (b["labels"][1, 3:] == -100).all()
    assert (b["attention_mask"] == (b["input_ids"] != 0)).all()


def test_small_preset_has_t5_small_size():
    n = sum(p.numel() for p in T5ForConditionalGeneration(T5Size.small().to_hf(32128)).parameters())
    assert n == 60_506_624


def test_training_lowers_the_loss(tok):
    threads = torch.get_num_threads(); torch.set_num_threads(1)  # tiny matrices: one thread is faster, and CPUs are shared
    torch.manual_seed(0)
    train = {t: [e for e in text_to_text(toy_examples(("reverse", "sort"), 200, max_len=5)) if e[0] == t] for t in ("reverse", "sort")}
    model = build_t5(T5Size.tiny(d_model=64, d_ff=128, num_layers=1, num_decoder_layers=1), tok)
    valid = text_to_text(toy_examples(("sort",), 20, split="heldout", max_len=5))
    h = train_t5(model, tok, train, {"reverse": .5, "sort": .5}, valid, steps=40, batch_size=16, lr=3e-3, warmup=10, eval_every=40)
    losses = h.series("loss")[1]
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    assert set(exact_match_by_task(model, tok, valid)) == {"sort"}
    assert "em_sort" in h.metrics
    torch.set_num_threads(threads)


def test_final_test_examples_never_repeat_validation_inputs():
    from llmcourse.t5 import final_test_examples, generated_examples, sst2_examples
    valid = generated_examples(200, "heldout") + sst2_examples("dev", 50)
    test = final_test_examples(valid, n=300)
    seen = {x for _, x, _ in valid}
    gen = [e for e in test if e[0] != "sst2"]
    assert not any(x in seen for _, x, _ in gen)
    assert {t: sum(e[0] == t for e in gen) for t in ("reverse", "sort", "add")} == {"reverse": 300, "sort": 300, "add": 300}
    assert sum(e[0] == "sst2" for e in test) == 1821  # SST-2's labelled test split, not the dev sentences of `valid`
    assert not {x for t, x, _ in test if t == "sst2"} & {x for t, x, _ in valid if t == "sst2"}
