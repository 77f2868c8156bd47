"Lesson 12: the assistant pipeline. RL beats SFT on held-out prompts, the reward model ranks held-out pairs, DPO's loss."
import math, random
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from llmcourse.assistant import (
    AssistantRecipe, Assistants, ChatTokenizer, RewardModel, assistants_path, dpo_loss, evaluate, group_advantages,
    kl_per_token, load_assistants, make_prompts, pad_batch, pairwise_accuracy, preference_pairs, quick_assistants,
    rule_score, save_assistants, sft_batch, task_answer, train_assistants, hf_tokenizer, response_logprobs)
from llmcourse.gpt import GPT

# The acceptance margins, stated once. Quick recipe, seed 0, 60 held-out prompts, greedy answers.
RL_REWARD_MARGIN = 0.5 # mean reward-model reward: GRPO at least this much above SFT (measured: +0.96); DPO above SFT
RM_ACCURACY_BOUND = 0.7 # reward model's pairwise accuracy on held-out preference pairs


@pytest.fixture(scope="module")
def tok(): return ChatTokenizer.for_course()


@pytest.fixture(scope="module")
def quick():
    "The quick-recipe models: loaded from the cache that the notebook fills, trained (about two minutes) otherwise."
    torch.set_num_threads(1)
    return quick_assistants()


def test_dpo_loss_matches_hand_computation():
    # log-ratios 1.5 (chosen) and -0.8 (rejected), beta 0.1: -log sigmoid(0.23) = log(1 + exp(-0.23))
    loss, rc, rr = dpo_loss(torch.tensor([0.5]), torch.tensor([-2.0]), torch.tensor([-1.0]), torch.tensor([-1.2]), 0.1)
    assert math.isclose(loss.item(), math.log1p(math.exp(-0.23)), abs_tol=1e-6)
    assert math.isclose(loss.item(), 0.584745, abs_tol=1e-5)
    assert math.isclose(rc.item(), 0.15, abs_tol=1e-6) and math.isclose(rr.item(), -0.08, abs_tol=1e-6)


def test_dpo_loss_matches_formula_in_float64():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(64, generator=g, dtype=torch.float64) * 5 for _ in range(4))
    for beta in (0.01, 0.1, 0.5):
        want = sum(math.log1p(math.exp(-beta * ((a - c) - (b - d)))) for a, b, c, d in
                   zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())) / 64
        assert math.isclose(dpo_loss(pc, pr, rc, rr, beta)[0].item(), want, rel_tol=1e-9)
    # equal policy and reference: the loss is log 2 whatever beta is
    assert math.isclose(dpo_loss(pc, pr, pc, pr, 0.3)[0].item(), math.log(2), rel_tol=1e-9)


def test_rl_reward_above_sft_on_heldout(quick):
    prompts = make_prompts(60, "heldout", seed=7, max_term=quick.recipe.max_term)
    res = {n: evaluate(quick.policy(n), quick.tok, prompts, quick.rewards) for n in ("sft", "dpo", "grpo")}
    msg = {n: round(r["reward"], 3) for n, r in res.items()}
    assert res["grpo"]["reward"] > res["sft"]["reward"] + RL_REWARD_MARGIN, msg
    assert res["dpo"]["reward"] > res["sft"]["reward"], msg
    rules = {n: r["rule_score"] for n, r in res.items()}
    assert min(rules["grpo"], rules["dpo"]) > rules["sft"], rules


def test_reward_model_heldout_pairwise_accuracy(quick):
    pairs = preference_pairs(make_prompts(60, "heldout", seed=11, max_term=quick.recipe.max_term), seed=11)
    assert len(pairs) > 40
    acc = pairwise_accuracy(quick.reward_model, quick.tok, pairs)
    assert acc > RM_ACCURACY_BOUND, acc


def test_assistants_api(quick):
    assert quick.names == ["pretrained", "sft", "dpo", "grpo"]
    r = quick.respond("sft", "upper romeo")
    assert isinstance(r, str) and isinstance(quick.reward("upper romeo", r), float)
    assert quick.respond_many("grpo", ["add 1+2", "upper romeo"]) == [quick.respond("grpo", "add 1+2"),
                                                                     quick.respond("grpo", "upper romeo")]
    with pytest.raises(KeyError, match="No policy"): quick.policy("gpt-5")


def test_chat_template_and_masking(tok):
    ids, n = tok.encode_chat("add 12+7", "Sure! 19")
    assert tok.decode(ids) == "<|user|>add 12+7<|assistant|>Sure! 19<|end|>" and tok.decode(ids[:n]).endswith("<|assistant|>")
    x, y = sft_batch(tok, [("add 12+7", "Sure! 19"), ("reverse a", "a"), ("upper romeo", "")])
    assert tok.decode(y[0][y[0] >= 0]) == "Sure! 19<|end|>"
    assert tok.decode(y[1][y[1] >= 0]) == "a<|end|>"
    assert tok.decode(y[2][y[2] >= 0]) == "<|end|>" # an empty response still learns to stop
    with pytest.raises(ValueError, match="not in the vocabulary"): tok.encode("€")


def test_hf_tokenizer_same_ids(tok):
    hf = hf_tokenizer(tok)
    for text in ["<|user|>reverse romeo<|assistant|>Sure! oemor<|end|>", "ROMEO:\nO, she doth teach!", "1+2=3 <|pad|>"]:
        assert hf(text, add_special_tokens=False)["input_ids"] == tok.encode(text)


def test_rule_and_tasks():
    assert [task_answer(p) for p in ("add 0+0", "add 20+20", "reverse abc", "upper abc")] == ["0", "40", "cba", "ABC"]
    assert rule_score("reverse abc", "Sure! cba") == 1.5 and rule_score("reverse abc", "cba!") == 0.0
    assert not set(make_prompts(100, "train")) & set(make_prompts(40, "heldout"))
    for p, c, r in preference_pairs(make_prompts(50), seed=3): assert rule_score(p, c) > rule_score(p, r)
    with pytest.raises(ValueError, match="Unknown task"): task_answer("sing la")


def test_reward_model_ignores_padding(tok):
    torch.manual_seed(0)
    rm = RewardModel(GPT(AssistantRecipe.tiny().gpt_config(tok.vocab_size)), AssistantRecipe.tiny().n_embd)
    seqs = [tok.encode_chat("add 1+2", "3")[0], tok.encode_chat("upper romeo", "Sure! ROMEO")[0]]
    batched = rm(pad_batch(seqs, tok.pad_id), torch.tensor([len(s) for s in seqs]))
    alone = torch.stack([rm(torch.tensor([s]), torch.tensor([len(s)]))[0] for s in seqs])
    assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_response_logprobs_match_a_direct_sum(tok):
    torch.manual_seed(0)
    m = GPT(AssistantRecipe.tiny().gpt_config(tok.vocab_size)).eval()
    ids, n = tok.encode_chat("reverse romeo", "oemor")
    logp = F.log_softmax(m(torch.tensor([ids[:-1]]))[0][0], -1) # (T, V)
    want = sum(logp[t - 1, ids[t]] for t in range(n, len(ids)))
    got = response_logprobs(m, tok, ["reverse romeo", "add 1+2"], ["oemor", "3"])[0]
    assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_grpo_helpers():
    adv = group_advantages(torch.tensor([[0.0, 1.0], [3.0, 3.0]]))
    assert_close(adv[0], torch.tensor([-0.7071, 0.7071]), atol=1e-3, rtol=0)
    assert adv[1].abs().max() == 0
    lp, ref = torch.randn(1000), torch.randn(1000)
    assert (kl_per_token(lp, ref) >= 0).all() and kl_per_token(lp, lp).abs().max() == 0


def test_save_load_roundtrip(tmp_path):
    torch.set_num_threads(1)
    a = train_assistants(AssistantRecipe.tiny())
    path = save_assistants(a, tmp_path / "a.pt")
    b = load_assistants(path)
    assert b.names == a.names and b.recipe == a.recipe
    for n in a.names:
        for (k, v), w in zip(a.policy(n).state_dict().items(), b.policy(n).state_dict().values()): assert_close(v, w, msg=k)
        assert b.respond(n, "add 3+4") == a.respond(n, "add 3+4")
    assert math.isclose(b.reward("add 3+4", "Sure! 7"), a.reward("add 3+4", "Sure! 7"), abs_tol=1e-6)
    assert assistants_path(AssistantRecipe.tiny()) != assistants_path(AssistantRecipe.quick())
