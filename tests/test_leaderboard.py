"Lesson 13: Elo and Bradley-Terry against independent fits, interval coverage on simulated leagues, bad input, the arena."
import math
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from llmcourse.leaderboard import (ARENA_MAY_2023, Player, answer_of, arithmetic_prompts, bootstrap_bradley_terry,
                                   count_battles, elo_over_orders, expected_score, fit_bradley_terry, leaderboard,
                                   online_elo, rule_judge, rule_players, run_arena, score_of_a, simulate_battles, true_sum)

TRUE = pd.Series(ARENA_MAY_2023, dtype=float)


def sklearn_ratings(battles, scale=400.0, base=10.0, init=1000.0):
    "Reference 1: scikit-learn's logistic regression on +1/-1 rows, a tie as a half win and a half loss, no penalty."
    c = count_battles(battles); m, n = len(c.pairs), len(c.models)
    X = np.zeros((m, n)); X[np.arange(m), c.pairs[:, 0]] = 1; X[np.arange(m), c.pairs[:, 1]] = -1
    lr = LogisticRegression(fit_intercept=False, C=1e12, tol=1e-12, max_iter=10_000)
    lr.fit(np.vstack([X, X]), np.r_[np.ones(m), np.zeros(m)],
           sample_weight=np.r_[c.counts * c.scores, c.counts * (1 - c.scores)])
    beta = lr.coef_[0] - lr.coef_[0].mean()
    return pd.Series(scale / math.log(base) * beta + init, index=c.models)


def zermelo_ratings(battles, iters=20_000):
    "Reference 2: Zermelo's / Hunter's minorize-maximize iteration on win counts (a tie is half a point each way)."
    models = sorted(set(battles.model_a) | set(battles.model_b)); ix = {m: i for i, m in enumerate(models)}
    n = len(models); W = np.zeros(n); N = np.zeros((n, n))
    s = np.where(battles.winner == "model_a", 1.0, np.where(battles.winner == "model_b", 0.0, 0.5))
    for a, b, sa in zip(battles.model_a.map(ix), battles.model_b.map(ix), s):
        W[a] += sa; W[b] += 1 - sa; N[a, b] += 1; N[b, a] += 1
    pi = np.ones(n)
    for _ in range(iters):
        new = W / (N / (pi[:, None] + pi[None, :])).sum(1)
        new /= np.exp(np.log(new).mean())
        done = np.abs(new - pi).max() < 1e-14
        pi = new
        if done: break
    r = 400 * np.log10(pi)
    return pd.Series(r - r.mean() + 1000, index=models)


@pytest.mark.parametrize("seed,n_models,n", [(0, 3, 300), (1, 5, 2000), (2, 9, 20_000), (3, 12, 5000)])
def test_bradley_terry_matches_sklearn_and_zermelo(seed, n_models, n):
    rng = np.random.default_rng(seed)
    truth = {f"m{i}": float(r) for i, r in enumerate(rng.normal(1000, 150, n_models))}
    b = simulate_battles(truth, n, tie_rate=0.3, seed=seed)
    ours = fit_bradley_terry(b)
    for ref in (sklearn_ratings(b), zermelo_ratings(b)):
        np.testing.assert_allclose(ours[ref.index].to_numpy(), ref.to_numpy(), atol=1e-2)  # a hundredth of a point


def test_bradley_terry_scale_base_anchor():
    b = simulate_battles(dict(A=1100, B=1000, C=900), 3000, seed=5)
    r = fit_bradley_terry(b)
    np.testing.assert_allclose(r.mean(), 1000.0, atol=1e-9)
    nat = fit_bradley_terry(b, scale=1.0, base=math.e, init_rating=0.0)  # natural units
    np.testing.assert_allclose((r - 1000).to_numpy(), (400 / math.log(10) * nat[r.index]).to_numpy(), atol=1e-6)
    anchored = fit_bradley_terry(b, anchor=("B", 1114.0))
    np.testing.assert_allclose(anchored["B"], 1114.0, atol=1e-9)
    np.testing.assert_allclose((anchored - anchored["B"]).to_numpy(), (r - r["B"])[anchored.index].to_numpy(), atol=1e-9)


def test_bootstrap_covers_the_truth_at_about_95_percent():
    "Each 95% interval should cover its true rating in about 95% of simulated leagues (40 leagues x 9 ratings)."
    covered = []
    for seed in range(40):
        b = simulate_battles(ARENA_MAY_2023, 5000, seed=100 + seed)
        boot = bootstrap_bradley_terry(b, rounds=100, seed=seed, init_rating=TRUE.mean())
        lo, hi = boot.quantile(0.025), boot.quantile(0.975)
        covered += ((lo <= TRUE[lo.index]) & (TRUE[lo.index] <= hi)).tolist()
    rate = np.mean(covered)
    assert 0.88 <= rate <= 0.99, rate  # 360 intervals: the binomial sd at 0.95 is 0.011


def test_simulated_2023_league_recovered_within_intervals_and_orders_agree():
    "The notebook's league: 50,000 battles from the May 2023 ratings."
    sim = simulate_battles(ARENA_MAY_2023, 50_000, seed=0)
    t = leaderboard(sim, rounds=200, init_rating=TRUE.mean(), elo_rounds=20)
    assert ((t.lower <= TRUE[t.index]) & (TRUE[t.index] <= t.upper)).all()
    true_order = list(TRUE.sort_values(ascending=False).index)
    assert list(t.index) == true_order
    assert list(t.online_elo.sort_values(ascending=False).index) == list(t.index)  # Elo and Bradley-Terry agree


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_elo_and_bradley_terry_agree_on_order_of_well_separated_models(seed):
    truth = {f"m{i}": 800 + 60 * i for i in range(6)}
    b = simulate_battles(truth, 6000, seed=seed)
    bt = fit_bradley_terry(b)
    elo = elo_over_orders(b, rounds=20, seed=seed).median().sort_values(ascending=False)
    assert list(bt.index) == list(elo.index) == sorted(truth, key=truth.get, reverse=True)


def test_online_elo_by_hand_and_invariants():
    two = pd.DataFrame(dict(model_a=["A", "A"], model_b=["B", "B"], winner=["model_a", "tie"]))
    r = online_elo(two, k=32)
    ea = 1 / (1 + 10 ** (-32 / 400))
    np.testing.assert_allclose(r["A"], 1016 + 32 * (0.5 - ea), atol=1e-9)
    b = simulate_battles(ARENA_MAY_2023, 3000, seed=7)
    r = online_elo(b)
    np.testing.assert_allclose(r.mean(), 1000.0, atol=1e-9)  # points only move between players
    flipped = pd.DataFrame(dict(model_a=b.model_b, model_b=b.model_a,
                                winner=b.winner.map({"model_a": "model_b", "model_b": "model_a", "tie": "tie"})))
    np.testing.assert_allclose(online_elo(flipped)[r.index].to_numpy(), r.to_numpy(), atol=1e-9)  # sides do not matter
    h = online_elo(b, history=True)
    assert h.shape == (len(b), len(r)) and np.allclose(h.iloc[-1][r.index].to_numpy(), r.to_numpy())


def test_elo_over_orders_equals_the_plain_loop():
    b = simulate_battles(ARENA_MAY_2023, 1500, seed=3)
    o = elo_over_orders(b, k=8, rounds=4, seed=9)
    perm = np.argsort(np.random.default_rng(9).random((4, len(b))), axis=1)
    for i in range(4):
        plain = online_elo(b.iloc[perm[i]], k=8)
        np.testing.assert_allclose(o.iloc[i][plain.index].to_numpy(), plain.to_numpy(), atol=1e-8)


def test_simulator_keeps_the_expected_score():
    b = simulate_battles(dict(A=1200, B=1000), 40_000, tie_rate=0.4, seed=1)
    s = score_of_a(b.winner); a_first = (b.model_a == "A").to_numpy()
    got = np.r_[s[a_first], 1 - s[~a_first]].mean()
    want = expected_score(1200, 1000)
    assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / len(b))
    p = float(want); assert abs((b.winner == "tie").mean() - 0.4 * (1 - abs(2 * p - 1))) < 0.01


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="model_c"): score_of_a(["model_a", "model_c"])
    with pytest.raises(ValueError, match="columns"): online_elo(pd.DataFrame(dict(a=[1])))
    with pytest.raises(ValueError, match="itself"):
        fit_bradley_terry(pd.DataFrame(dict(model_a=["A"], model_b=["A"], winner=["tie"])))
    sweep = pd.DataFrame(dict(model_a=["A", "A", "B"], model_b=["B", "C", "C"], winner=["model_a", "model_a", "tie"]))
    with pytest.raises(ValueError, match="infinite"): fit_bradley_terry(sweep)
    r = fit_bradley_terry(sweep, l2=1.0)  # a weak prior keeps the unbeaten model finite
    assert r.index[0] == "A" and np.isfinite(r).all()
    with pytest.raises(ValueError, match="tie_rate"): simulate_battles(dict(A=1, B=2), 10, tie_rate=2)


def test_grouped_bootstrap():
    b = simulate_battles(ARENA_MAY_2023, 4000, seed=4).assign(id=np.arange(4000))
    single = bootstrap_bradley_terry(b, rounds=200, seed=1)
    by_id = bootstrap_bradley_terry(b, rounds=200, seed=1, by="id")  # groups of one battle: the same distribution
    ratio = (by_id.std() / single.std()).to_numpy()
    assert np.all((ratio > 0.75) & (ratio < 1.33)), ratio
    b["group"] = np.arange(4000) // 40  # 100 groups; each group copies its first battle 40 times
    dup = b.groupby("group").transform("first").assign(group=b.group)
    wide = bootstrap_bradley_terry(dup, rounds=200, seed=1, by="group").std()
    narrow = bootstrap_bradley_terry(dup, rounds=200, seed=1).std()
    assert (wide > 3 * narrow).all()  # copies are no new evidence: resampling groups sees that (about sqrt(40) wider)


def test_rule_judge_and_arena_with_rule_players():
    assert answer_of("7 + 5 = 12\n\nThis is") == 12 and answer_of("The answer is 1,024.") == 1024
    assert answer_of("I cannot count.") is None and answer_of("= so 3 and 4") == 3
    q = "What is 7 + 5? Answer with the number only."
    assert true_sum(q) == 12
    assert rule_judge(q, "12", "13") == "model_a" and rule_judge(q, "11", "It is 12") == "model_b"
    assert rule_judge(q, "11", "13") == "tie" and rule_judge(q, "12", "12") == "tie"
    prompts = arithmetic_prompts(30, seed=2)
    assert len(set(prompts)) == 30
    half = Player("half", lambda p: str(true_sum(p) + (zlib_odd(p))))
    battles, answers = run_arena([*rule_players(), half], prompts, rule_judge, seed=0)
    assert len(battles) == 3 * 30 and list(answers.columns) == ["prompt", "calculator", "guesser", "half"]
    t = leaderboard(battles, rounds=50, elo_rounds=5, by="prompt")
    assert list(t.index) == ["calculator", "half", "guesser"]
    with pytest.raises(ValueError, match="unique"): run_arena([*rule_players(), *rule_players()], prompts, rule_judge)


def zlib_odd(p):
    import zlib
    return zlib.crc32(p.encode()) % 2  # wrong on about half the prompts


def test_smollm2_players():
    "SmolLM2 from PyPI (the `llama` extra) in llama.cpp: greedy answers repeat, sampled ones follow the seed."
    from llama_cpp import Llama
    from llmcourse.data import smollm2_gguf
    from llmcourse.leaderboard import llama_cpp_player
    llm = Llama(model_path=str(smollm2_gguf()), n_ctx=256, n_threads=2, verbose=False, seed=0)
    q = "What is 2 + 2? Answer with the number only."
    greedy = llama_cpp_player("greedy", llm, max_tokens=8)
    assert isinstance(greedy.respond(q), str) and greedy.respond(q) == greedy.respond(q) # greedy: the same answer twice
    a, b = (llama_cpp_player("hot", llm, temperature=1.0, max_tokens=8, seed=1).respond(q) for _ in range(2))
    assert a == b # the same seed, the same draw


def test_load_arena_battles_filters_without_the_hub(monkeypatch):
    "The full-mode loader keeps anonymous votes up to the day asked for (US/Pacific), in time order; hub call faked."
    import datasets # the `rl` extra brings it (through trl)
    from llmcourse.leaderboard import load_arena_battles
    day = pd.Timestamp("2023-05-22 23:30", tz="US/Pacific").timestamp()  # late on the 22nd in California: kept
    fake = pd.DataFrame(dict(model_a=["a", "b", "a", "c"], model_b=["b", "c", "c", "a"],
                             winner=["model_a", "tie", "model_b", "model_a"],
                             tstamp=[day, day - 86400, day + 3600, day - 10], anony=[True, True, True, False],
                             language=["English"] * 4, judge=["x"] * 4, question_id=["q"] * 4))
    seen = {}
    def fake_load(name, split):
        seen["name"], seen["split"] = name, split
        return datasets.Dataset.from_pandas(fake)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    got = load_arena_battles()
    assert seen == dict(name="lmsys/chatbot_arena_conversations", split="train")
    assert got.tstamp.tolist() == [day - 86400, day]  # the next day's vote and the non-anonymous one are dropped
    assert len(load_arena_battles(until=None, anonymous_only=False)) == 4
