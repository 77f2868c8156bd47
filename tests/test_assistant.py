"""Lesson 12: the assistant pipeline. RL raises the accuracy on test prompts above SFT's, the reward model ranks the
labeller's validation pairs, DPO's loss is TRL's, and the plumbing (splits, template, masks, padding, save and load)."""
import copy, math, tempfile, warnings
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from datasets import Dataset # trl and datasets come with the `rl` extra, which this lesson needs
from trl import DPOConfig, DPOTrainer

from llmcourse.assistant import (
    ASSISTANT_NAMES, SPLITS, AssistantRecipe, Assistants, ChatTokenizer, RewardModel, assistants_path, bootstrap_interval,
    comparisons, correct_reward, dpo_loss, group_advantages, hf_tokenizer, kl_per_token, load_assistants, make_prompts,
    pad_batch, pairwise_accuracy, quick_assistants, rule_score, save_assistants, sft_batch, split_prompts, task_accuracy,
    task_answer, token_logprobs, train_assistants)
from llmcourse.gpt import GPT, gpt_to_hf

# Bounds on trained numbers of the quick recipe, with margins measured over its seeds 0-4 by
# bench/12_assistant/seeds.py (see bench/12_assistant/RESULTS.md), so that another CPU's rounding passes (it changes
# the trajectory as a seed does) while a real regression fails.
GRPO_GAIN_BOUND = 0.0 # test accuracy of GRPO (checker's reward) minus SFT's: +0.074 ± 0.023, lowest seed +0.048
DPO_GAIN_BOUND = 0.0 # test accuracy of DPO minus SFT's: +0.077 ± 0.023, lowest seed +0.054
GRPO_RM_GAP_BOUND = 0.0 # GRPO's test accuracy minus that of GRPO against the reward model: 0.08 to 0.16 over seeds
RM_ACCURACY_BOUND = 0.5 # pairwise accuracy on the labeller's validation pairs, 0.52 to 0.73 over seeds: better than a coin


@pytest.fixture(scope="module")
def tok(): return ChatTokenizer.for_course()


@pytest.fixture(scope="module")
def quick():
    "The quick-recipe assistants: loaded from the cache the notebook fills, trained (a few CPU-minutes) otherwise."
    torch.set_num_threads(1)
    return quick_assistants()


@pytest.fixture(scope="module")
def on_test(quick):
    "Each RL policy and SFT, scored on every test prompt (greedy)."
    prompts = split_prompts("test", quick.recipe.max_term)
    return {n: task_accuracy(quick.policies[n], quick.tok, prompts) for n in ("sft", "dpo", "grpo", "grpo_rm")}


def test_rl_raises_test_accuracy_above_sft(on_test):
    acc = {n: round(r["accuracy"], 4) for n, r in on_test.items()}
    assert acc["grpo"] - acc["sft"] > GRPO_GAIN_BOUND, acc
    assert acc["dpo"] - acc["sft"] > DPO_GAIN_BOUND, acc
    assert acc["grpo"] - acc["grpo_rm"] > GRPO_RM_GAP_BOUND, acc # the checker's reward beats the learned one


def test_reward_model_ranks_validation_pairs(quick):
    pairs = comparisons(quick.policies["sft"], quick.tok, quick.recipe, "valid")
    assert len(pairs) > 50 and all(rule_score(p, c) > rule_score(p, r) for p, c, r in pairs)
    assert pairwise_accuracy(quick.reward_model, quick.tok, pairs) > RM_ACCURACY_BOUND


@pytest.mark.parametrize("beta,nll", [(0.1, 0.0), (0.1, 1.0), (0.5, 0.3)])
def test_dpo_loss_equals_trl_dpo_trainer(tok, beta, nll):
    "Our DPO loss plus `nll` times the chosen tokens' NLL, against TRL's `DPOTrainer` (sigmoid + sft losses) on one batch."
    torch.manual_seed(0)
    cfg = AssistantRecipe.tiny().gpt_config(tok.vocab_size)
    ref, policy = GPT(cfg).eval(), GPT(cfg).eval() # two different random models: the log-ratios are far from zero
    pairs = [("add 1+2", "3", "Sure! 4"), ("reverse romeo", "Sure! oemor", "oemo"), ("upper wit", "WIT", "wit"),
             ("add 9+9", "Sure! 18", "81"), ("upper a", "A", "Sure! a")]
    args = DPOConfig(output_dir=tempfile.mkdtemp(), beta=beta, loss_type=["sigmoid", "sft"], loss_weights=[1.0, nll],
                     per_device_train_batch_size=len(pairs), max_length=None, bf16=False, use_cpu=True, report_to="none",
                     save_strategy="no", dataloader_num_workers=0, disable_tqdm=True)
    data = Dataset.from_list([dict(prompt=tok.chat(p), chosen=f"{c}<|end|>", rejected=f"{r}<|end|>") for p, c, r in pairs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = DPOTrainer(model=gpt_to_hf(copy.deepcopy(policy)), ref_model=gpt_to_hf(copy.deepcopy(ref)), args=args,
                             train_dataset=data, processing_class=hf_tokenizer(tok))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(pairs))])
    trl_loss = trainer.compute_loss(trainer.model, batch).item()
    ps, cs, rs = zip(*pairs); n = len(pairs)
    x, y = sft_batch(tok, list(zip(ps + ps, cs + rs)))
    with torch.no_grad(): lp, ref_lp = token_logprobs(policy, x, y), token_logprobs(ref, x, y).sum(-1)
    ours = dpo_loss(lp[:n].sum(-1), lp[n:].sum(-1), ref_lp[:n], ref_lp[n:], beta)[0] - nll * lp[:n].sum() / (y[:n] >= 0).sum()
    assert math.isclose(trl_loss, ours.item(), rel_tol=1e-5, abs_tol=1e-5), (trl_loss, ours.item())


def test_dpo_loss_matches_hand_computation():
    # log-ratios 1.5 (chosen) and -0.8 (rejected), beta 0.1: -log sigmoid(0.23) = log(1 + exp(-0.23))
    loss, rc, rr = dpo_loss(torch.tensor([0.5]), torch.tensor([-2.0]), torch.tensor([-1.0]), torch.tensor([-1.2]), 0.1)
    assert math.isclose(loss.item(), math.log1p(math.exp(-0.23)), abs_tol=1e-6)
    assert math.isclose(rc.item(), 0.15, abs_tol=1e-6) and math.isclose(rr.item(), -0.08, abs_tol=1e-6)
    g = torch.Generator().manual_seed(0)
    pc, pr = (torch.randn(64, generator=g, dtype=torch.float64) * 5 for _ in range(2))
    assert math.isclose(dpo_loss(pc, pr, pc, pr, 0.3)[0].item(), math.log(2), rel_tol=1e-9) # policy = reference: log 2


def test_assistants_api(quick):
    assert quick.names == list(ASSISTANT_NAMES)
    r = quick.respond("sft", "upper romeo")
    assert isinstance(r, str) and isinstance(quick.reward("upper romeo", r), float)
    assert quick.respond_many("grpo", ["add 1+2", "upper romeo"]) == [quick.respond("grpo", "add 1+2"),
                                                                     quick.respond("grpo", "upper romeo")]
    with pytest.raises(KeyError, match="No policy"): quick.respond("gpt-5", "add 1+2")


def test_splits_are_disjoint_and_cover_every_prompt():
    s = {k: set(split_prompts(k)) for k in SPLITS}
    assert not (s["train"] & s["valid"]) and not (s["train"] & s["test"]) and not (s["valid"] & s["test"])
    words = {p.split()[1] for k in SPLITS for p in s[k] if p.startswith("upper ")}
    assert sum(map(len, s.values())) == 100 + 2 * len(words) # every sum of two digits, every word for two tasks
    assert set(make_prompts(200, "test")) <= s["test"] and make_prompts(7, "valid", 3) == make_prompts(7, "valid", 3)
    with pytest.raises(ValueError, match="split must be one of"): split_prompts("heldout")


def test_rule_checker_and_reward():
    assert [task_answer(p) for p in ("add 0+0", "add 20+20", "reverse abc", "upper abc")] == ["0", "40", "cba", "ABC"]
    assert rule_score("reverse abc", "Sure! cba") == 1.5 and rule_score("reverse abc", "cba") == 1.0
    assert rule_score("reverse abc", "Sure! cb") == 0.0 and rule_score("reverse abc", "cba!") == 0.0
    assert correct_reward(["add 1+2"] * 3, ["3", "Sure! 3", "4"]) == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="Unknown task"): task_answer("sing la")


def test_chat_template_and_masking(tok):
    ids, n = tok.encode_chat("add 12+7", "Sure! 19")
    assert tok.decode(ids) == "<|user|>add 12+7<|assistant|>Sure! 19<|end|>" and tok.decode(ids[:n]).endswith("<|assistant|>")
    x, y = sft_batch(tok, [("add 12+7", "Sure! 19"), ("reverse a", "a"), ("upper romeo", "")])
    assert tok.decode(y[0][y[0] >= 0]) == "Sure! 19<|end|>"
    assert tok.decode(y[1][y[1] >= 0]) == "a<|end|>"
    assert tok.decode(y[2][y[2] >= 0]) == "<|end|>" # an empty response still learns to stop
    assert tok.pieces("<|user|>ab") == ["<|user|>", "a", "b"] and tok.decode_response(tok.encode("ab<|end|>cd")) == "ab"
    with pytest.raises(KeyError, match="not in this tokenizer"): tok.encode("€")


def test_hf_tokenizer_same_ids(tok):
    hf = hf_tokenizer(tok)
    for text in ["<|user|>reverse romeo<|assistant|>Sure! oemor<|end|>", "ROMEO:\nO, she doth teach!", "1+2=3 <|pad|>"]:
        assert hf(text, add_special_tokens=False)["input_ids"] == tok.encode(text)


def test_reward_model_ignores_padding(tok):
    torch.manual_seed(0)
    rm = RewardModel(GPT(AssistantRecipe.tiny().gpt_config(tok.vocab_size)), AssistantRecipe.tiny().n_embd)
    seqs = [tok.encode_chat("add 1+2", "3")[0], tok.encode_chat("upper romeo", "Sure! ROMEO")[0]]
    batched = rm(pad_batch(seqs, tok.pad_id), torch.tensor([len(s) for s in seqs]))
    alone = torch.stack([rm(torch.tensor([s]), torch.tensor([len(s)]))[0] for s in seqs])
    assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_token_logprobs_match_a_direct_sum(tok):
    torch.manual_seed(0)
    m = GPT(AssistantRecipe.tiny().gpt_config(tok.vocab_size)).eval()
    ids, n = tok.encode_chat("reverse romeo", "oemor")
    logp = F.log_softmax(m(torch.tensor([ids[:-1]]))[0][0], -1) # (T, V)
    want = sum(logp[t - 1, ids[t]] for t in range(n, len(ids)))
    x, y = sft_batch(tok, [("reverse romeo", "oemor"), ("add 1+2", "3")])
    assert_close(token_logprobs(m, x, y).sum(-1)[0], want, atol=1e-5, rtol=1e-5)


def test_grpo_helpers():
    adv = group_advantages(torch.tensor([[0.0, 1.0], [3.0, 3.0]]))
    assert_close(adv[0], torch.tensor([-0.7071, 0.7071]), atol=1e-3, rtol=0)
    assert adv[1].abs().max() == 0
    lp, ref = torch.randn(1000), torch.randn(1000)
    assert (kl_per_token(lp, ref) >= 0).all() and kl_per_token(lp, lp).abs().max() == 0


def test_bootstrap_interval_against_the_normal_approximation():
    values = [1.0] * 120 + [0.0] * 80 # accuracy 0.6 on 200 items: standard error sqrt(0.6 * 0.4 / 200) = 0.0346
    lo, hi = bootstrap_interval(values)
    assert abs(lo - (0.6 - 1.96 * 0.0346)) < 0.01 and abs(hi - (0.6 + 1.96 * 0.0346)) < 0.01


def test_a_pipeline_that_learned_nothing_says_so():
    "Five SFT steps of a tiny model answer nothing right, so the labeller has nothing to compare: a clear error."
    torch.set_num_threads(1)
    with pytest.raises(ValueError, match="no pair to learn from"): train_assistants(AssistantRecipe.tiny())


def test_save_load_roundtrip(tmp_path, tok):
    torch.manual_seed(0)
    r = AssistantRecipe.tiny()
    policies = {n: GPT(r.gpt_config(tok.vocab_size)).eval() for n in ASSISTANT_NAMES}
    a = Assistants(tok, policies, RewardModel(GPT(r.gpt_config(tok.vocab_size)), r.n_embd).eval(), r, dict(pairs=3))
    b = load_assistants(save_assistants(a, tmp_path / "a.pt"))
    assert b.names == a.names and b.recipe == a.recipe and b.metrics == a.metrics
    for n in a.names:
        for (k, v), w in zip(a.policies[n].state_dict().items(), b.policies[n].state_dict().values()): assert_close(v, w, msg=k)
        assert b.respond(n, "add 3+4") == a.respond(n, "add 3+4")
    assert math.isclose(b.reward("add 3+4", "Sure! 7"), a.reward("add 3+4", "Sure! 7"), abs_tol=1e-6)
    assert assistants_path(AssistantRecipe.tiny()) != assistants_path(AssistantRecipe.quick())
