"""Lesson 10b: wav2vec 2.0 against transformers.Wav2Vec2ForCTC on random weights, the CTC forward algorithm against
torch.nn.functional.ctc_loss, the decoders against brute force, and bad input. Each parity test also shows that it
fails on a broken mapping or a broken recursion."""
import itertools, json, math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC
from llmcourse import wav2vec2 as w2v
from llmcourse.wav2vec2 import (HF_NAMES, CTCVocab, Wav2Vec2, Wav2Vec2Config, collapse_ctc_path, ctc_forward_loss, ctc_greedy_decode,
                                ctc_prefix_beam_search, load_wav2vec2_ctc, normalize_waveform, wav2vec2_from_hf, wav2vec2_to_hf)

LAYOUTS = {
    "base": Wav2Vec2Config.tiny(),
    "xls-r": Wav2Vec2Config.tiny(feat_norm="layer", conv_bias=True, pre_norm=True),
    "odd pos kernel, 3 heads": Wav2Vec2Config.tiny(d_model=24, n_heads=3, pos_kernel=5, pos_groups=3, n_layers=3, eps=1e-6),
    "digits": Wav2Vec2Config.digits(),
}

def randomized(cfg, seed=0):
    torch.manual_seed(seed); m = Wav2Vec2(cfg)
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.3)
    return m.eval()

def waves(n=2, samples=3200, seed=1):
    return normalize_waveform(torch.randn(n, samples, generator=torch.Generator().manual_seed(seed)))

@pytest.mark.parametrize("name", LAYOUTS)
def test_parity_with_transformers(name):
    cfg = LAYOUTS[name]
    ours = randomized(cfg)
    hf = wav2vec2_to_hf(ours)
    x = waves()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-5, rtol=1e-5)
        back = wav2vec2_from_hf(hf)
        torch.testing.assert_close(back(x), ours(x), atol=0, rtol=0)
    assert back.cfg == cfg
    assert int(hf._get_feat_extract_output_lengths(torch.tensor(x.size(1)))) == cfg.frames(x.size(1))

@pytest.mark.parametrize("a,b", [("q_proj", "k_proj"), ("v_proj", "out_proj"), (r"\1.layer_norm.", r"\1.final_layer_norm."),
                                 ("intermediate_dense", "output_dense")])
def test_a_wrong_mapping_fails_parity(a, b):
    cfg = LAYOUTS["base"]
    ours, x = randomized(cfg), waves()
    wrong = [(p, t.replace(a, "@").replace(b, a).replace("@", b)) for p, t in HF_NAMES]
    assert wrong != HF_NAMES
    try: hf = wav2vec2_to_hf(ours, wrong)
    except (RuntimeError, ValueError): return  # shapes that do not fit are refused outright
    with torch.no_grad(), pytest.raises(AssertionError):
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-5, rtol=1e-5)

def test_real_sizes_match_the_published_models():
    # parameter counts from the model cards: wav2vec 2.0 Base 95M, XLS-R 300M (both with a 32-letter CTC head here)
    for cfg, millions in ((Wav2Vec2Config.base(), 94.4), (Wav2Vec2Config.xls_r_300m(vocab_size=32), 315.5)):
        with torch.device("meta"): n = sum(p.numel() for p in Wav2Vec2(cfg).parameters())
        with torch.device("meta"): ref = sum(p.numel() for p in Wav2Vec2ForCTC(w2v.wav2vec2_hf_config(cfg)).parameters())
        assert n == ref and abs(n / 1e6 - millions) < 1, (n, ref)

CTC_CASES = [([1, 1, 2], 20), ([3, 3, 3, 3], 12), ([5], 5), ([2, 4, 2, 4, 1], 17), ([1, 2], 4), ([4, 4], 3)]

def _ctc_batch(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    T, C = max(t for _, t in CTC_CASES), 6
    lp = torch.randn(T, len(CTC_CASES), C, generator=g, dtype=dtype).log_softmax(-1)
    targets, lengths = [t for t, _ in CTC_CASES], [n for _, n in CTC_CASES]
    ref = F.ctc_loss(lp, torch.tensor(sum(targets, [])), lengths, [len(t) for t in targets], reduction="none")
    return lp, targets, lengths, ref

@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ctc_forward_algorithm_equals_pytorch(seed, dtype):
    lp, targets, lengths, ref = _ctc_batch(seed, dtype)
    torch.testing.assert_close(ctc_forward_loss(lp, targets, lengths), ref, atol=1e-5, rtol=1e-5)
    flat = torch.tensor(sum(targets, []))
    torch.testing.assert_close(ctc_forward_loss(lp, targets, lengths, reduction="mean"),
                               F.ctc_loss(lp, flat, lengths, [len(t) for t in targets]), atol=1e-5, rtol=1e-5)

def test_ctc_gradient_equals_pytorch():
    # compared on the logits: PyTorch's ctc_loss returns a gradient that is right once it flows through log_softmax
    lp, targets, lengths, _ = _ctc_batch(1)
    a = lp.clone().requires_grad_(); b = lp.clone().requires_grad_()
    ctc_forward_loss(a.log_softmax(-1), targets, lengths).sum().backward()
    F.ctc_loss(b.log_softmax(-1), torch.tensor(sum(targets, [])), lengths, [len(t) for t in targets], reduction="sum").backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5)

def test_the_impossible_alignment_is_infinite():
    # "4 4" needs 3 frames (4, blank, 4); in 2 frames no path spells it
    lp = torch.randn(2, 1, 6).log_softmax(-1)
    assert ctc_forward_loss(lp, [[4, 4]]).item() == math.inf == F.ctc_loss(lp, torch.tensor([4, 4]), [2], [2], reduction="sum").item()

@pytest.mark.parametrize("wrong", ["skip between equal labels", "never skip"])
def test_a_wrong_recursion_fails(monkeypatch, wrong):
    right = w2v.ctc_skip_allowed
    def broken(ext, blank=0):
        ok = right(ext, blank)
        if wrong == "never skip": return torch.zeros_like(ok)
        ok[2:] = ext[2:] != blank  # also jumps the blank between two equal labels, merging them
        return ok
    monkeypatch.setattr(w2v, "ctc_skip_allowed", broken)
    lp, targets, lengths, ref = _ctc_batch(0)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(ctc_forward_loss(lp, targets, lengths), ref, atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize("seed", range(20))
def test_prefix_beam_search_is_exact_with_a_full_beam(seed):
    T, C = 5, 3
    lp = (2 * torch.randn(T, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).log_softmax(-1)
    spelled = {}
    for path in itertools.product(range(C), repeat=T):
        key = tuple(collapse_ctc_path(path))
        spelled[key] = np.logaddexp(spelled.get(key, -np.inf), float(lp[range(T), list(path)].sum()))
    results = ctc_prefix_beam_search(lp, beam=C ** T)
    assert {p: s for p, s in results}.keys() == spelled.keys()
    for prefix, score in results: assert abs(score - spelled[prefix]) < 1e-6
    # the scores of all transcripts sum to one
    assert abs(np.logaddexp.reduce([s for _, s in results])) < 1e-6
    # greedy decoding is the collapse of the best path
    best_path = max(itertools.product(range(C), repeat=T), key=lambda p: float(lp[range(T), list(p)].sum()))
    assert ctc_greedy_decode(lp[None])[0] == collapse_ctc_path(best_path)

def test_collapse_matches_the_hugging_face_tokenizer(tmp_path):
    chars = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("EFGHINORSTUVWXZ")
    (tmp_path/"vocab.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}))
    tok = Wav2Vec2CTCTokenizer(str(tmp_path/"vocab.json"))
    ours = CTCVocab.from_vocab_json(tmp_path/"vocab.json")
    rng = np.random.default_rng(0)
    for _ in range(50):
        path = [int(i) for i in rng.choice([0, 0, 0, 4] + list(range(5, len(chars))), size=rng.integers(1, 30))]
        assert ours.decode(collapse_ctc_path(path)) == " ".join(tok.decode(path).split())

def test_bad_input_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="feat_norm"): Wav2Vec2Config(feat_norm="batch")
    with pytest.raises(ValueError, match="one entry per conv layer"): Wav2Vec2Config(conv_dim=(8,), conv_kernel=(3, 3), conv_stride=(2, 2))
    with pytest.raises(ValueError, match="multiple of n_heads"): Wav2Vec2Config(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="not in this CTC vocabulary"): CTCVocab().encode("one eleven")
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"): load_wav2vec2_ctc(tmp_path/"nothing")
    wav2vec2_to_hf(randomized(Wav2Vec2Config.tiny())).save_pretrained(tmp_path/"ckpt")
    with pytest.raises(FileNotFoundError, match="vocab.json"): load_wav2vec2_ctc(tmp_path/"ckpt")
    (tmp_path/"ckpt"/"vocab.json").write_text(json.dumps({"<pad>": 0, "A": 1}))
    with pytest.raises(ValueError, match="12 outputs but vocab.json 2 pieces"): load_wav2vec2_ctc(tmp_path/"ckpt")
    hf = Wav2Vec2ForCTC(w2v.wav2vec2_hf_config(Wav2Vec2Config.tiny())); hf.config.hidden_act = "relu"
    with pytest.raises(ValueError, match="hidden_act"): wav2vec2_from_hf(hf)
