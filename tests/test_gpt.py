"Lesson 06 GPT-2: weight mapping parity, generation equal to transformers, DDP equal to one process, the trained result."
import math, os, re, subprocess, sys, textwrap, time
import pytest
import torch
from torch.testing import assert_close

from llmcourse.core import seed_everything
from llmcourse.gpt import (GPT, GPTConfig, TrainConfig, KVCache, generate, train, gpt_from_hf, gpt_to_hf, hf_config,
                           state_dict_from_hf, shakespeare_char, token_batches, save_checkpoint, load_checkpoint)

transformers = pytest.importorskip("transformers")
from transformers import GPT2LMHeadModel

CONFIGS = [GPTConfig.tiny(vocab_size=100), GPTConfig.tiny(vocab_size=57, n_layer=3, n_head=4, n_embd=64, block_size=48)]


def _random_hf(cfg, seed=0):
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(hf_config(cfg)).eval()
    with torch.no_grad(): # non-zero biases and LayerNorm parameters so that every tensor matters
        for p in hf.parameters():
            if p.dim() == 1: p.add_(0.1*torch.randn_like(p))
    return hf


@pytest.mark.parametrize("cfg", CONFIGS, ids=["tiny", "wider"])
def test_from_hf_logits_match(cfg):
    hf = _random_hf(cfg)
    ours = gpt_from_hf(hf).eval()
    idx = torch.randint(0, cfg.vocab_size, (3, cfg.block_size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(): assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["tiny", "wider"])
def test_to_hf_logits_match(cfg):
    torch.manual_seed(3)
    ours = GPT(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters(): p.add_(0.05*torch.randn_like(p)) # move away from the init (zero biases, unit LN)
    hf = gpt_to_hf(ours)
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.block_size))
    with torch.no_grad(): assert_close(hf(idx).logits, ours(idx)[0], atol=1e-5, rtol=0)
    # round trip gives back the same tensors
    again = gpt_from_hf(hf)
    for (k, a), b in zip(ours.state_dict().items(), again.state_dict().values()): assert_close(a, b, msg=k)


@pytest.mark.parametrize("which", ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"])
def test_wrong_mapping_is_caught(which):
    "Undoing one Conv1D transpose (or loading the transposed-shape tensor) must break parity."
    cfg = GPTConfig.tiny(vocab_size=100)
    hf = _random_hf(cfg)
    sd = state_dict_from_hf(hf.state_dict())
    bad = GPT(cfg).eval()
    for k in sd:
        if k.endswith(which) and sd[k].shape[0] == sd[k].shape[1]: sd[k] = sd[k].t()
    try: bad.load_state_dict(sd)
    except RuntimeError: return # a wrong shape cannot even be loaded
    if all(not k.endswith(which) or sd[k].shape[0] != sd[k].shape[1] for k in sd): return
    idx = torch.randint(0, 100, (2, 16))
    with torch.no_grad(): assert (bad(idx)[0] - hf(idx).logits).abs().max() > 1e-3


def test_mapping_rejects_other_activation():
    from llmcourse.gpt import gpt_config_from_hf
    c = hf_config(GPTConfig.tiny()); c.activation_function = "relu"
    with pytest.raises(ValueError, match="GELU"): gpt_config_from_hf(c)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["tiny", "wider"])
def test_greedy_equals_hf_generate(cfg):
    hf = _random_hf(cfg, seed=5)
    ours = gpt_from_hf(hf).eval()
    prompt = torch.randint(0, cfg.vocab_size, (3, 6), generator=torch.Generator().manual_seed(2))
    n = cfg.block_size - 6 # up to the end of the context window
    want = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False,
                       pad_token_id=0, eos_token_id=None)
    assert generate(ours, prompt, n, temperature=0).tolist() == want.tolist()
    assert generate(ours, prompt, n, temperature=0, use_cache=False).tolist() == want.tolist()


def test_cache_matches_full_forward_past_block_size():
    cfg = GPTConfig.tiny(vocab_size=50, block_size=16)
    torch.manual_seed(0); m = GPT(cfg).eval()
    prompt = torch.randint(0, 50, (2, 3))
    a = generate(m, prompt, 40, temperature=0, use_cache=True)
    b = generate(m, prompt, 40, temperature=0, use_cache=False)
    assert a.tolist() == b.tolist()


def test_sampling_reproducible_and_topk_respected():
    cfg = GPTConfig.tiny(vocab_size=50)
    torch.manual_seed(0); m = GPT(cfg).eval()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    a = generate(m, prompt, 20, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0))
    b = generate(m, prompt, 20, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0))
    assert a.tolist() == b.tolist()
    # top_k=1 is greedy
    assert generate(m, prompt, 10, top_k=1).tolist() == generate(m, prompt, 10, temperature=0).tolist()


def test_forward_refuses_too_long():
    m = GPT(GPTConfig.tiny())
    with pytest.raises(ValueError, match="block_size"): m(torch.zeros(1, 33, dtype=torch.long))


def test_atomic_checkpoint_survives_crash(tmp_path, monkeypatch):
    p = tmp_path/"ck.pt"
    save_checkpoint({"iter": 1}, p)
    def crash(obj, f, *a, **k): f.write(b"partial"); raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError): save_checkpoint({"iter": 2}, p)
    monkeypatch.undo()
    assert load_checkpoint(p)["iter"] == 1
    assert [q.name for q in tmp_path.iterdir()] == ["ck.pt"]


DDP_SCRIPT = textwrap.dedent('''
    import os, sys, json, torch
    torch.set_num_threads(1)
    from llmcourse.core import seed_everything
    from llmcourse.gpt import GPT, GPTConfig, TrainConfig, train, shakespeare_char, token_batches
    tok, tr, va = shakespeare_char()
    seed_everything(0)
    model = GPT(GPTConfig.tiny(vocab_size=tok.vocab_size))
    tc = TrainConfig(max_iters=int(sys.argv[1]), batch_size=8, warmup_iters=2, eval_interval=1000, eval_iters=2,
                     log_interval=1)
    h = train(model, token_batches(tr, va, 32), tc, device="cpu", progress=False)
    if int(os.environ.get("RANK", 0)) == 0:
        print("RESULT", json.dumps(dict(loss=h.series("loss")[1], val=h.last("val_loss"),
                                        wsum=float(sum(p.double().sum() for p in model.parameters())))))
''')


def _run(tmp_path, nproc, steps):
    import json
    script = tmp_path/"ddp_train.py"; script.write_text(DDP_SCRIPT)
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1
           else [sys.executable]) + [str(script), str(steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMCOURSE_PROGRESS": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_ddp_two_processes_equal_one(tmp_path):
    one, two = _run(tmp_path, 1, 5), _run(tmp_path, 2, 5)
    assert len(one["loss"]) == len(two["loss"]) == 5
    for a, b in zip(one["loss"], two["loss"]): assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4), (one, two)
    assert math.isclose(one["val"], two["val"], abs_tol=1e-4)
    assert math.isclose(one["wsum"], two["wsum"], rel_tol=1e-5, abs_tol=1e-3)
    assert one["loss"][-1] < one["loss"][0] # and it trained


@pytest.mark.slow
def test_nanogpt_cpu_recipe_reaches_1_88():
    "nanoGPT's CPU config for shakespeare_char, tuned (bench/gpt_recipe_sweep.py): 2000 steps reach val loss <= 1.88."
    if os.cpu_count() and os.getloadavg()[0] > os.cpu_count(): torch.set_num_threads(1) # a busy CPU: threads only wait
    tok, tr, va = shakespeare_char()
    seed_everything(1337)
    model = GPT(GPTConfig.baby(vocab_size=tok.vocab_size))
    t0 = time.perf_counter()
    h = train(model, token_batches(tr, va, 64), TrainConfig.nanogpt_cpu_tuned(), device="cpu", progress=False)
    print(f"val loss {h.last('val_loss'):.4f} after 2000 steps in {time.perf_counter()-t0:.0f} s")
    assert h.last("val_loss") <= 1.88
