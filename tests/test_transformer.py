"Parity sweeps and bad input for lesson 05 (`llmcourse.transformer`): references are PyTorch's own modules and brute force."
import itertools, math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from llmcourse.transformer import (CharVocab, DecoderLayer, EncoderLayer, FeedForward, LabelSmoothingLoss, MultiHeadAttention,
                                   Transformer, TransformerConfig, beam_search, causal_mask, greedy_decode, noam_lr,
                                   noam_scheduler, padding_mask, scaled_dot_product_attention, seq2seq_batch,
                                   sinusoidal_positions)

# float32 tolerances of torch.testing.assert_close (rtol 1.3e-6, atol 1e-5) unless stated


@pytest.mark.parametrize("L,S,E,Ev", [(1, 1, 4, 4), (5, 7, 8, 6), (7, 5, 16, 16), (9, 9, 3, 5)])
@pytest.mark.parametrize("mask", ["none", "bool", "float", "causal", "scale", "bool_batched"])
def test_sdpa_matches_torch(L, S, E, Ev, mask):
    g = torch.Generator().manual_seed(L * 100 + S)
    q, k, v = torch.randn(2, 3, L, E, generator=g), torch.randn(2, 3, S, E, generator=g), torch.randn(2, 3, S, Ev, generator=g)
    kw = {}
    if mask == "bool":
        m = torch.rand(L, S, generator=g) > 0.4; m[:, 0] = True; kw = dict(attn_mask=m)
    elif mask == "bool_batched":
        m = torch.rand(2, 1, L, S, generator=g) > 0.4; m[..., -1] = True; kw = dict(attn_mask=m)
    elif mask == "float": kw = dict(attn_mask=torch.randn(2, 3, L, S, generator=g))
    elif mask == "causal": kw = dict(is_causal=True)
    elif mask == "scale": kw = dict(scale=0.3)
    assert_close(scaled_dot_product_attention(q, k, v, **kw), F.scaled_dot_product_attention(q, k, v, **kw))


def test_sdpa_gqa_and_weights():
    q, kv = torch.randn(2, 6, 4, 8), torch.randn(2, 2, 5, 8)  # 3 query heads per key/value head
    assert_close(scaled_dot_product_attention(q, kv, kv, enable_gqa=True), F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True))
    _, w = scaled_dot_product_attention(q, kv.repeat_interleave(3, 1), kv.repeat_interleave(3, 1), is_causal=True, return_weights=True)
    assert_close(w.sum(-1), torch.ones(2, 6, 4))
    assert (w.triu(1) == 0).all()


def test_masks_match_torch_conventions():
    for T in (1, 2, 7):
        assert torch.equal(causal_mask(T), nn.Transformer.generate_square_subsequent_mask(T).isinf())
    assert torch.equal(padding_mask(torch.tensor([[3, 0], [0, 0]]), 0), torch.tensor([[False, True], [True, True]]))


def _masks(B, h, L, S, g):
    kpm = torch.zeros(B, S, dtype=torch.bool); kpm[1, S // 2:] = True  # second sequence padded
    return [dict(), dict(key_padding_mask=kpm), dict(attn_mask=torch.rand(L, S, generator=g) > 0.7),
            dict(attn_mask=torch.randn(L, S, generator=g)), dict(attn_mask=torch.randn(B * h, L, S, generator=g)),
            dict(key_padding_mask=kpm, attn_mask=torch.rand(L, S, generator=g) > 0.7),
            dict(key_padding_mask=torch.randn(B, S, generator=g))]


@pytest.mark.parametrize("E,h,bias", [(8, 1, True), (16, 4, True), (24, 3, False), (32, 8, True)])
@pytest.mark.parametrize("cross", [False, True])
def test_mha_matches_torch(E, h, bias, cross):
    g = torch.Generator().manual_seed(E + h)
    torch.manual_seed(E * h)
    ours = MultiHeadAttention(E, h, bias=bias).eval()
    ref = ours.to_torch().eval()
    B, L = 2, 5
    x = torch.randn(B, L, E, generator=g)
    mem = torch.randn(B, 7, E, generator=g) if cross else x
    S = mem.size(1)
    for kw in _masks(B, h, L, S, g):
        out, w = ours(x, mem, need_weights=True, **kw)
        ref_out, ref_w = ref(x, mem, mem, **kw)
        assert_close(out, ref_out, msg=lambda m: f"{kw}: {m}")
        assert_close(w.mean(1), ref_w)
        _, ref_w_heads = ref(x, mem, mem, average_attn_weights=False, **kw)
        assert_close(w, ref_w_heads)
    assert_close(ours(x, is_causal=True), ref(x, x, x, attn_mask=causal_mask(L))[0])


def test_mha_from_torch_and_gradients():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(3, 6, 16, requires_grad=True)
    out_ref = ref(x, x, x, attn_mask=causal_mask(6))[0]
    out = ours(x, attn_mask=causal_mask(6))
    assert_close(out, out_ref)
    gx_ref, = torch.autograd.grad(out_ref.square().sum(), x)
    gx, = torch.autograd.grad(out.square().sum(), x)
    assert_close(gx, gx_ref)
    out_ref = ref(x, x, x)[0]; out_ref.sum().backward()
    ours(x).sum().backward()
    assert_close(torch.cat([ours.q_proj.weight.grad, ours.k_proj.weight.grad, ours.v_proj.weight.grad]), ref.in_proj_weight.grad)
    assert_close(ours.out_proj.weight.grad, ref.out_proj.weight.grad)


def test_mha_bad_input():
    with pytest.raises(ValueError, match="not divisible"): MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="kdim"): MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, kdim=4, vdim=4))


def test_sinusoidal_positions_formula():
    pe = sinusoidal_positions(30, 10)
    for pos, i in itertools.product(range(30), range(10)):
        angle = pos / 10000 ** ((i - i % 2) / 10)
        assert math.isclose(pe[pos, i].item(), math.sin(angle) if i % 2 == 0 else math.cos(angle), abs_tol=1e-5)
    with pytest.raises(ValueError, match="even"): sinusoidal_positions(4, 5)


@pytest.mark.parametrize("pre_norm", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_layers_match_torch(pre_norm, activation):
    torch.manual_seed(1)
    src, tgt = torch.randn(3, 6, 32), torch.randn(3, 5, 32)
    src_pad = torch.zeros(3, 6, dtype=torch.bool); src_pad[1, 4:] = True; src_pad[2, 2:] = True
    tgt_pad = torch.zeros(3, 5, dtype=torch.bool); tgt_pad[2, 3:] = True
    enc = EncoderLayer(32, 4, 64, dropout=0.2, activation=activation, pre_norm=pre_norm).eval()
    dec = DecoderLayer(32, 4, 64, dropout=0.2, activation=activation, pre_norm=pre_norm).eval()
    mem = enc(src, src_key_padding_mask=src_pad)
    assert_close(mem, enc.to_torch().eval()(src, src_key_padding_mask=src_pad))
    assert_close(dec(tgt, mem, memory_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad),
                 dec.to_torch().eval()(tgt, mem, tgt_mask=causal_mask(5), memory_key_padding_mask=src_pad,
                                       tgt_key_padding_mask=tgt_pad))


def test_layers_match_torch_in_training_mode_without_dropout():
    "Training mode takes PyTorch's slow path (no fused kernel): outputs and gradients equal."
    torch.manual_seed(2)
    enc = EncoderLayer(16, 2, 32, dropout=0.0)
    ref = enc.to_torch()
    x = torch.randn(2, 4, 16)
    out, out_ref = enc(x), ref(x)
    assert_close(out, out_ref)
    out.sum().backward(); out_ref.sum().backward()
    assert_close(enc.ff.linear1.weight.grad, ref.linear1.weight.grad)
    assert_close(enc.norm1.weight.grad, ref.norm1.weight.grad)


def test_feedforward_bad_activation():
    with pytest.raises(ValueError, match="unknown"): FeedForward(4, 8, activation="tanh")


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.25])
@pytest.mark.parametrize("ignore", [-100, 0])
def test_label_smoothing_matches_cross_entropy(eps, ignore):
    torch.manual_seed(3)
    logits = torch.randn(4, 7, 13, requires_grad=True)
    target = torch.randint(0, 13, (4, 7)); target[0, 5:] = 0
    ours = LabelSmoothingLoss(eps, ignore_index=ignore)(logits, target)
    ref = nn.CrossEntropyLoss(label_smoothing=eps, ignore_index=ignore)(logits.flatten(0, 1), target.flatten())
    assert_close(ours, ref)
    g, = torch.autograd.grad(ours, logits); g_ref, = torch.autograd.grad(ref, logits)
    assert_close(g, g_ref)
    with pytest.raises(ValueError, match="smoothing"): LabelSmoothingLoss(1.0)


def test_noam_schedule():
    peak = 512 ** -0.5 * 4000 ** -0.5
    assert math.isclose(noam_lr(4000, 512, 4000), peak)
    assert math.isclose(max(noam_lr(s, 512, 4000) for s in range(1, 8000)), peak)
    assert math.isclose(noam_lr(1, 512, 4000), peak / 4000)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = noam_scheduler(opt, 64, 10, factor=2.0)
    for s in range(1, 30):
        assert math.isclose(opt.param_groups[0]["lr"], 2.0 * noam_lr(s, 64, 10)); opt.step(); sched.step()


def _tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    return Transformer(TransformerConfig.tiny(src_vocab_size=7, tgt_vocab_size=6, d_model=16, n_heads=2, d_ff=32, **kw)).eval()


@pytest.mark.parametrize("pre_norm", [False, True])
def test_transformer_causal_and_padding(pre_norm):
    model = _tiny_model(pre_norm=pre_norm)
    src, tgt = torch.randint(1, 7, (3, 6)), torch.randint(1, 6, (3, 5))
    logits = model(src, tgt)
    assert logits.shape == (3, 5, 6)
    for t in range(5):
        changed = tgt.clone(); changed[:, t] = changed[:, t] % 5 + 1
        assert_close(model(src, changed)[:, :t], logits[:, :t])
    padded = torch.cat([src, torch.zeros(3, 3, dtype=torch.long)], 1)
    assert_close(model(padded, tgt), logits)


def test_transformer_bad_input():
    with pytest.raises(ValueError, match="share_embeddings"):
        Transformer(TransformerConfig.tiny(src_vocab_size=5, tgt_vocab_size=6, share_embeddings=True))
    model = _tiny_model(max_len=8)
    with pytest.raises(ValueError, match="max_len"): model(torch.ones(1, 9, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))


def test_base_preset_matches_paper_size():
    with torch.device("meta"):
        n = sum(p.numel() for p in Transformer(TransformerConfig.base()).parameters())
    assert abs(n - 65e6) / 65e6 < 0.05  # Vaswani et al. 2017, Table 3: 65M


def _sequences_logp(model, src, seqs, bos, pad):
    "log p(seq | src) of every sequence in `seqs` by teacher forcing, in one batch: the reference for beam search."
    T = max(map(len, seqs))
    ys = torch.tensor([[bos] + s + [pad] * (T - len(s)) for s in seqs])  # (N, T+1)
    logp = model(src.expand(len(seqs), -1), ys[:, :-1]).log_softmax(-1)  # (N, T, V)
    tok = logp.gather(-1, ys[:, 1:, None]).squeeze(-1)  # (N, T)
    keep = torch.tensor([[i < len(s) for i in range(T)] for s in seqs])
    return (tok * keep).sum(-1).tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_exhaustive_equals_brute_force(seed):
    model, bos, eos, max_len = _tiny_model(seed), 1, 2, 3
    src = torch.randint(3, 7, (1, 4))
    V = model.cfg.tgt_vocab_size
    cands = []
    for n in range(1, max_len + 1):
        for seq in itertools.product(range(V), repeat=n):
            if eos in seq[:-1]: continue  # nothing follows <eos>
            if n < max_len and seq[-1] != eos: continue  # unfinished and not cut off by max_len
            cands.append(list(seq))
    cands = list(zip(cands, _sequences_logp(model, src, cands, bos, model.cfg.pad_id)))
    best_seq, best_lp = max(cands, key=lambda c: c[1])
    out = beam_search(model, src, bos, eos, beam_size=V ** max_len, max_len=max_len, length_penalty=0.0, return_all=True)
    assert out[0][0].tolist() == best_seq
    assert math.isclose(out[0][1], best_lp, abs_tol=1e-4)
    assert len(out) == len(cands)


@pytest.mark.parametrize("seed", [0, 3])
def test_beam_of_one_is_greedy(seed):
    model = _tiny_model(seed)
    src = torch.randint(3, 7, (4, 5))
    greedy = greedy_decode(model, src, 1, 2, max_len=6)
    for i in range(4):
        beam = beam_search(model, src[i], 1, 2, beam_size=1, max_len=6)
        row = greedy[i].tolist()
        assert beam.tolist() == (row[:row.index(2) + 1] if 2 in row else row)
    with pytest.raises(ValueError, match="one sequence"): beam_search(model, src, 1, 2)


def test_vocab_and_batches():
    v = CharVocab(extra_specials=["<copy>"])
    src, tgt_in, tgt_out = seq2seq_batch([("copy", "12", "12"), ("copy", "3", "3")], v)
    assert src.tolist() == [[3, 5, 6], [3, 7, 0]]
    assert tgt_in.tolist() == [[1, 5, 6], [1, 7, 0]] and tgt_out.tolist() == [[5, 6, 2], [7, 2, 0]]
    assert v.decode([5, 6, 2, 7]) == "12"
    with pytest.raises(ValueError, match="not in this vocabulary"): v.encode("1x")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_copy_reverse_over_seeds(seed):
    "The notebook's training run with three seeds: at least 98% (copy) and 90% (reverse) exact match on 1,000 held-out sequences per task."
    from llmcourse.core import seed_everything
    from llmcourse.data import toy_split
    from llmcourse.transformer import exact_match, toy_examples, train_seq2seq
    torch.set_num_threads(1)
    tasks = ("copy", "reverse")
    v = CharVocab(extra_specials=[f"<{t}>" for t in tasks])
    train = [ex for ex in toy_examples(tasks, 20_000, seed=0) if all(toy_split(t, ex[1]) == "train" for t in tasks)]
    seed_everything(seed)
    model = Transformer(TransformerConfig.tiny(src_vocab_size=len(v), tgt_vocab_size=len(v), d_ff=128, max_len=16))
    train_seq2seq(model, train, toy_examples(tasks, 500, seed=1), v, batch_size=128, max_steps=2400, lr_factor=0.5, eval_every=200, seed=seed)
    min_exact = {"copy": 0.98, "reverse": 0.90}  # the notebook's MIN_EXACT: over seeds 0-4, held-out copy 0.991-1.000 and
    # reverse 0.944-1.000 (bench/05_transformer/copy_reverse_seeds.py, RESULTS.md); seeds 0-2 scored 1.000 on both
    for t in tasks:
        assert exact_match(model, toy_examples((t,), 1000, split="heldout", seed=0), v) >= min_exact[t]
