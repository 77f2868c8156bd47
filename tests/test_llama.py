"Lesson 11: parity of our Llama with transformers and llama.cpp, GGUF round trips, quantizers against llama.cpp's."
import gc, math
import numpy as np
import pytest
import torch
from torch.testing import assert_close

gguf = pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")
transformers = pytest.importorskip("transformers")
from llmcourse.llama import (LlamaConfig, Llama, KVCache, generate, rope_cos_sin, load_hf_state_dict, hf_to_ours_names,
                             to_hf_state_dict, save_gguf, load_gguf_llama, train_bpe, BPETokenizer, llama_cpp_logits,
                             compare_next_token, quantize_q8_0, quantize_q4_0, quantize_q4_1, dequantize, llama_cpp_quantize)
from llmcourse.data import smollm2_gguf, load_tiny_shakespeare

N_THREADS = 2


def random_hf(cfg, seed=0):
    from transformers import LlamaForCausalLM
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(cfg.to_hf()).eval()
    with torch.no_grad():
        for p in hf.parameters(): p.normal_(0, 0.2 if p.ndim > 1 else 1.0)
    return hf


CONFIGS = [LlamaConfig.tiny(), LlamaConfig.tiny(n_kv_heads=4), LlamaConfig.tiny(n_kv_heads=1, tie_embeddings=True),
           LlamaConfig.tiny(dim=96, n_heads=3, n_kv_heads=1, n_layers=3, rope_theta=100000.0)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"d{c.dim}h{c.n_heads}kv{c.n_kv_heads}L{c.n_layers}tie{int(c.tie_embeddings)}")
def test_equal_to_transformers(cfg):
    hf = random_hf(cfg)
    ours = load_hf_state_dict(Llama(cfg), hf.state_dict()).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 33), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(): assert_close(ours(ids), hf(ids).logits, atol=1e-5, rtol=0)
    # and back: our weights under HF names rebuild the same HF model
    assert set(to_hf_state_dict(ours)) == set(hf_to_ours_names(cfg))


@pytest.mark.parametrize("swap", [("gate", "up"), ("q", "k"), ("attn_norm", "ffn_norm")])
def test_wrong_mapping_fails(swap):
    "The parity test must catch a wrong weight map, here two names swapped in every layer."
    cfg = LlamaConfig.tiny(n_kv_heads=4)  # q and k of the same shape, so a swap loads without a shape error
    hf = random_hf(cfg)
    names = hf_to_ours_names(cfg)
    a, b = swap
    bad = {k: (v.replace(f".{a}.", f".{b}.") if f".{a}." in v else v.replace(f".{b}.", f".{a}.")) for k, v in names.items()}
    assert bad != names
    ours = load_hf_state_dict(Llama(cfg), hf.state_dict(), bad).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 20))
    with torch.no_grad(), pytest.raises(AssertionError):
        assert_close(ours(ids), hf(ids).logits, atol=1e-5, rtol=0)


def test_rope_equals_transformers():
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    for cfg in (LlamaConfig.tiny(), LlamaConfig.smollm2_135m()):
        pos = torch.arange(0, 4096, 7)
        c, s = LlamaRotaryEmbedding(cfg.to_hf())(torch.zeros(1, 1, cfg.dim), pos[None])
        oc, os_ = rope_cos_sin(pos, cfg.head_dim, cfg.rope_theta)
        assert_close(oc, c[0], atol=1e-5, rtol=0); assert_close(os_, s[0], atol=1e-5, rtol=0)


def test_kv_cache_generation_equals_full_recompute():
    cfg = LlamaConfig.tiny()
    torch.manual_seed(0)
    m = load_hf_state_dict(Llama(cfg), random_hf(cfg).state_dict()).eval()
    prompt = torch.randint(0, cfg.vocab_size, (2, 7))
    out = generate(m, prompt, 12)
    ids = prompt
    with torch.no_grad():
        for _ in range(12): ids = torch.cat([ids, m(ids)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ids)
    with pytest.raises(ValueError, match="KV cache holds"):
        m(torch.zeros(1, 9, dtype=torch.long), KVCache(cfg, max_len=8))


# --- quantizers: byte-identical to llama.cpp's reference (gguf.quants ports quantize_row_*_ref) ---
def _hard_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 256, generator=g)
    w[0, :32] = 0  # an all-zero block
    w[1, :32] = 1.5  # a constant block
    w[2, :32] = torch.linspace(-1, 1, 32)  # halves at the rounding boundary
    w[3, :32] = -w[3, :32].abs()  # a block whose largest magnitude is negative
    w[4] *= 1e4; w[5] *= 1e-4
    return w


@pytest.mark.parametrize("qtype,fn", [("Q8_0", quantize_q8_0), ("Q4_0", quantize_q4_0), ("Q4_1", quantize_q4_1)])
def test_quantizers_match_gguf_reference(qtype, fn):
    w = _hard_weights()
    GT = gguf.GGMLQuantizationType[qtype]
    ref = gguf.quants.quantize(w.numpy(), GT)
    mine = fn(w)
    assert mine.shape == ref.shape and np.array_equal(mine, ref)
    assert_close(dequantize(mine, qtype), torch.from_numpy(gguf.quants.dequantize(ref, GT)))


def test_quantize_rejects_bad_width():
    with pytest.raises(ValueError, match="multiple of 32"): quantize_q8_0(torch.randn(4, 40))


# --- GGUF written by us, run by llama.cpp ---
@pytest.fixture(scope="module")
def tiny_model_and_files(tmp_path_factory):
    text = load_tiny_shakespeare()[:20000]
    tok = train_bpe(text, 32)
    cfg = LlamaConfig.tiny(vocab_size=len(tok))
    hf = random_hf(cfg, seed=3)
    model = load_hf_state_dict(Llama(cfg), hf.state_dict()).eval()
    with torch.no_grad():  # moderate logits, so the distributions are neither flat nor one-hot
        model.lm_head.weight.mul_(0.05)
    d = tmp_path_factory.mktemp("gguf")
    files = {q: save_gguf(model, tok, d / f"t-{q}.gguf", q) for q in ("F32", "F16", "Q8_0")}
    return model, tok, text, files


def _cpp_vs_ours(model, path, ids):
    cpp = llama_cpp.Llama(model_path=str(path), n_ctx=256, logits_all=True, n_threads=N_THREADS, verbose=False)
    try: ref = llama_cpp_logits(cpp, ids)
    finally: cpp.close()
    with torch.no_grad(): ours = model(torch.tensor([ids]))[0]
    return compare_next_token(ref, ours)


@pytest.mark.parametrize("qtype,max_kl,max_dp", [("F32", 1e-6, 1e-4), ("F16", 1e-4, 5e-3), ("Q8_0", 1e-3, 2e-2)])
def test_gguf_round_trip_in_llama_cpp(tiny_model_and_files, qtype, max_kl, max_dp):
    model, tok, text, files = tiny_model_and_files
    cpp = llama_cpp.Llama(model_path=str(files[qtype]), n_ctx=256, vocab_only=True, verbose=False)
    try: assert cpp.tokenize(text[:300].encode(), add_bos=False) == tok.encode(text[:300])
    finally: cpp.close()
    r = _cpp_vs_ours(model, files[qtype], tok.encode(text[:200]))
    assert r["mean_kl"] < max_kl and r["max_prob_diff"] < max_dp, r


def test_gguf_without_qk_permutation_is_caught(tiny_model_and_files, tmp_path, monkeypatch):
    "Writing q/k without llama.cpp's permutation gives a file that runs but disagrees."
    import llmcourse.llama as L
    model, tok, text, _ = tiny_model_and_files
    monkeypatch.setattr(L, "permute_qk_for_gguf", lambda w, n: w)
    p = L.save_gguf(model, tok, tmp_path / "unpermuted.gguf", "F32")
    r = _cpp_vs_ours(model, p, tok.encode(text[:200]))
    assert r["mean_kl"] > 1e-4, r


def test_gguf_reader_round_trip(tiny_model_and_files):
    model, tok, text, files = tiny_model_and_files
    back = load_gguf_llama(files["F32"])
    assert back.cfg == model.cfg
    assert_close(back.state_dict(), model.state_dict())
    t2 = BPETokenizer.from_gguf(gguf.GGUFReader(files["F32"]))
    assert t2.tokens == tok.tokens and t2.encode("ROMEO:") == tok.encode("ROMEO:")


@pytest.mark.parametrize("qtype,fn", [("Q8_0", quantize_q8_0), ("Q4_0", quantize_q4_0)])
def test_our_quantizer_equals_llama_cpp_quantize(tiny_model_and_files, tmp_path, qtype, fn):
    from llmcourse.llama import ours_to_gguf_tensors
    model, tok, text, files = tiny_model_and_files
    q = gguf.GGUFReader(llama_cpp_quantize(files["F32"], tmp_path / f"{qtype}.gguf", qtype, N_THREADS))
    theirs = {t.name: t for t in q.tensors}
    for name, w in ours_to_gguf_tensors(model).items():
        if w.ndim == 1: continue
        assert theirs[name].tensor_type.name == qtype
        assert np.array_equal(fn(w), theirs[name].data), name


# --- SmolLM2 from its GGUF ---
@pytest.fixture(scope="module")
def smol():
    path = smollm2_gguf()
    model = load_gguf_llama(path)
    tok = BPETokenizer.from_gguf(gguf.GGUFReader(path))
    yield path, model, tok
    del model; gc.collect()


TEXTS = ["Hello world! It's 2024: 12345 tokens, naïve café ☕ 日本語\n\n  indented\tcode = x**2 // 3; don't",
         "<|im_start|>user\nWhat is 7 * 6?<|im_end|>\n", "   leading and trailing   ", "a\n\n\nb  c\t\td 1.5e-3 $100",
         "Ünïcödé, emoji 🙂🙃 and mixed123numbers4u, URLs https://x.org/a?b=1&c=2", "I'm sure you'll see they've gone, we'd"]


def test_tokenizer_equals_llama_cpp(smol):
    path, _, tok = smol
    cpp = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        for t in TEXTS + [load_tiny_shakespeare()[:3000]]:
            for special in (False, True):
                assert tok.encode(t, special=special) == cpp.tokenize(t.encode(), add_bos=False, special=special), (t, special)
            assert tok.decode(tok.encode(t)) == t
    finally: cpp.close()


CHAT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nExplain photosynthesis to a child.<|im_end|>\n<|im_start|>assistant\nPhotosynthesis is how "
        "plants make their own food. Plants take in sunlight with their green leaves, water from the ground through "
        "their roots, and a gas called carbon dioxide from the air. Using the energy from sunlight, they turn the water "
        "and carbon dioxide into sugar, which gives them energy to grow. While they do this, they also let out oxygen, "
        "which is the air that people and animals need to breathe. So every time you see a green plant in the sun, it "
        "is busy making food and fresh air for all of us! Plants are like little kitchens that cook with sunshine. "
        "Without photosynthesis, there would be no food for animals and no oxygen for us to breathe, so plants are "
        "very important for life on Earth.<|im_end|>\n<|im_start|>user\nThank you! And why are leaves green?<|im_end|>\n<|im_start|>assistant\nLeaves are green because")


def test_smollm2_agrees_with_llama_cpp(smol):
    path, model, tok = smol
    ids = tok.encode(CHAT, special=True)
    assert len(ids) >= 200
    ids = ids[:200]
    cpp = llama_cpp.Llama(model_path=str(path), n_ctx=512, logits_all=True, n_threads=N_THREADS, verbose=False)
    try: ref = llama_cpp_logits(cpp, ids)
    finally: cpp.close()
    with torch.no_grad(): ours = model(torch.tensor([ids]))[0]
    r = compare_next_token(ref, ours)
    print(f"SmolLM2 vs llama.cpp: top-1 {r['top1_agreement']:.3f}, mean KL {r['mean_kl']:.2e}")
    assert r["top1_agreement"] >= 0.98 and r["mean_kl"] < 0.01, r


@pytest.mark.slow
def test_smollm2_f32_gguf_equals_llama_cpp(smol, tmp_path):
    "Written back as F32, llama.cpp and our model agree to float rounding (the Q4_1 gap is llama.cpp's quantized math)."
    path, model, tok = smol
    p = save_gguf(model, tok, tmp_path / "smol-f32.gguf", "F32")
    ids = tok.encode(CHAT, special=True)[:200]
    cpp = llama_cpp.Llama(model_path=str(p), n_ctx=512, logits_all=True, n_threads=N_THREADS, verbose=False)
    try: ref = llama_cpp_logits(cpp, ids)
    finally: cpp.close()
    with torch.no_grad(): r = compare_next_token(ref, model(torch.tensor([ids]))[0])
    assert r["top1_agreement"] == 1.0 and r["mean_kl"] < 1e-5, r
