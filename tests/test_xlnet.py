"Lesson 07b XLNet: two-stream logits against transformers' XLNetLMHeadModel, the permutation masks, the training batches."
import pytest
import torch
from torch.testing import assert_close

import transformers
from llmcourse.bert import randomized
from llmcourse.xlnet import (XLNetConfig, XLNetLM, hf_xlnet_config, permutation_batch, permutation_lm_loss, token_chunks,
                             xlnet_from_hf, xlnet_masks)

transformers.logging.set_verbosity_error()


def hf_xlnet(cfg, seed=3):
    return randomized(transformers.XLNetLMHeadModel(hf_xlnet_config(cfg)), seed=seed)

XL_CONFIGS = {"tiny": XLNetConfig.tiny(), "three-layers": XLNetConfig.tiny(vocab_size=37, d_model=24, n_layers=3, n_heads=3, d_ff=40)}

@pytest.mark.parametrize("name", XL_CONFIGS)
@pytest.mark.parametrize("num_predict", [1, 3, 9])
@pytest.mark.parametrize("segments", [False, True])
def test_xlnet_two_stream_logits_match(name, num_predict, segments):
    cfg = XL_CONFIGS[name]
    hf = hf_xlnet(cfg)
    ours = xlnet_from_hf(hf)
    T, B = 9, 3
    g = torch.Generator().manual_seed(num_predict)
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    masks = [xlnet_masks(torch.randperm(T, generator=g), num_predict) for _ in range(B)]
    pm, tm = torch.stack([m[0] for m in masks]), torch.stack([m[1] for m in masks])
    seg = (torch.arange(T) >= 4).long().expand(B, -1) if segments else None
    with torch.no_grad():
        want = hf(ids, perm_mask=pm, target_mapping=tm, token_type_ids=seg).logits
        got = ours(ids, pm, tm, seg)
    assert got.shape == (B, num_predict, cfg.vocab_size)
    assert_close(got, want, atol=1e-5, rtol=0)

def test_xlnet_content_stream_logits_match():
    cfg = XL_CONFIGS["tiny"]
    hf, T = hf_xlnet(cfg, seed=5), 7
    ours = xlnet_from_hf(hf)
    ids = torch.randint(0, cfg.vocab_size, (2, T), generator=torch.Generator().manual_seed(0))
    pm = torch.stack([xlnet_masks([3, 0, 6, 1, 5, 2, 4], 4)[0], xlnet_masks(list(range(T)), T)[0]])
    with torch.no_grad():
        assert_close(ours(ids, pm), hf(ids, perm_mask=pm).logits, atol=1e-5, rtol=0)
        assert_close(ours(ids), hf(ids).logits, atol=1e-5, rtol=0)  # no mask: bidirectional

def test_xlnet_wrong_biases_are_caught():
    cfg = XL_CONFIGS["tiny"]
    hf = hf_xlnet(cfg)
    ours = xlnet_from_hf(hf)
    with torch.no_grad():
        a = ours.attn[0]; a.r_w_bias, a.r_r_bias = a.r_r_bias, a.r_w_bias
    ids = torch.randint(0, cfg.vocab_size, (1, 6), generator=torch.Generator().manual_seed(0))
    pm, tm = xlnet_masks([5, 4, 3, 2, 1, 0], 3)
    with torch.no_grad(): err = (ours(ids, pm[None], tm[None]) - hf(ids, perm_mask=pm[None], target_mapping=tm[None]).logits).abs().max()
    assert err > 1e-4

def test_xlnet_masks_follow_the_order():
    order = [3, 0, 4, 1, 2]
    pm, tm = xlnet_masks(order, num_predict=5)
    rank = {p: r for r, p in enumerate(order)}
    for i in range(5):
        for j in range(5): assert pm[i, j].item() == float(rank[j] >= rank[i])
    assert tm.argmax(1).tolist() == order and torch.equal(tm.sum(1), torch.ones(5))
    pm, tm = xlnet_masks(order, num_predict=2)  # targets 1 and 2; 3, 0, 4 are context
    assert pm[[3, 0, 4]][:, [3, 0, 4]].sum() == 0 and pm[[3, 0, 4]][:, [1, 2]].all()
    assert pm[2, 1] == 0 and pm[1, 2] == 1
    with pytest.raises(ValueError, match="permutation"): xlnet_masks([0, 0, 1], 1)
    with pytest.raises(ValueError, match="num_predict"): xlnet_masks([0, 1, 2], 0)


def test_permutation_lm_loss_equals_transformers_loss():
    "Our batch (orders, targets, labels) and loss give the loss XLNetLMHeadModel computes from the same labels."
    cfg = XL_CONFIGS["three-layers"]
    hf = hf_xlnet(cfg, seed=7)
    ours = xlnet_from_hf(hf)
    ids = torch.randint(0, cfg.vocab_size, (4, 10), generator=torch.Generator().manual_seed(1))
    pm, tm, labels = permutation_batch(ids, num_predict=3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(labels, torch.stack([ids[b, tm[b].argmax(-1)] for b in range(4)]))
    with torch.no_grad():
        want = hf(ids, perm_mask=pm, target_mapping=tm, labels=labels).loss
        assert_close(permutation_lm_loss(ours, ids, pm, tm, labels), want, atol=1e-5, rtol=1e-5)

def test_token_chunks_keep_the_stream_and_refuse_too_little_text():
    texts = [[5, 6, 7], [8], [9, 10, 11, 12]]
    c = token_chunks(texts, length=3, sep_id=1)
    assert c.tolist() == [[5, 6, 7], [1, 8, 1], [9, 10, 11]]  # the tail (12, 1) makes no full chunk
    with pytest.raises(ValueError, match="no chunk"): token_chunks([[1, 2]], length=8, sep_id=0)
