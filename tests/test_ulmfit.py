"Lesson 04 ULMFiT: parity of the from-scratch pieces with fastai, bad input, the label-budget protocol, and the slow curve."
import math, warnings
import pytest, torch, torch.nn as nn
from torch.testing import assert_close
warnings.filterwarnings("ignore", category=UserWarning)
from fastai.text.models.awdlstm import WeightDropout
from fastai.callback.schedule import combined_cos
from llmcourse.ulmfit import (WeightDroppedLSTM, one_cycle_lr, slanted_triangular_lr, unfreezing_schedule, sst2_sentences,
                              ULMFiTConfig, ulmfit, export_encoder, load_exported_encoder, offline_tokenizer)
from llmcourse.data import load_sst2


@pytest.mark.parametrize("n_in,n_hid,p", [(1, 1, 0.1), (5, 7, 0.5), (16, 32, 0.2), (8, 64, 0.9)])
def test_weight_dropped_lstm_matches_fastai(n_in, n_hid, p):
    torch.manual_seed(0)
    ours = WeightDroppedLSTM(n_in, n_hid, weight_p=p)
    ref = WeightDropout(nn.LSTM(n_in, n_hid, batch_first=True), weight_p=p)
    sd = ours.lstm.state_dict()
    ref.load_state_dict({"weight_hh_l0_raw": sd["weight_hh_l0"], **{f"module.{k}": v for k, v in sd.items() if k != "weight_hh_l0"}})
    x = torch.randn(4, 13, n_in)
    h0 = (torch.randn(1, 4, n_hid), torch.randn(1, 4, n_hid))
    for training in (True, False):
        ours.train(training); ref.train(training)
        torch.manual_seed(3); a, (ha, ca) = ours(x, h0)
        torch.manual_seed(3); b, (hb, cb) = ref(x, h0)
        assert_close(a, b); assert_close(ha, hb); assert_close(ca, cb) # default float32 tolerances


@pytest.mark.parametrize("pct_start,div,div_final", [(0.25, 25., 1e5), (0.1, 10., 1e4), (0.5, 100., 1e3)])
def test_one_cycle_matches_fastai(pct_start, div, div_final):
    lr = 3e-3
    sched = combined_cos(pct_start, lr/div, lr, lr/div_final)
    for i in range(200):
        pct = i/200
        assert math.isclose(one_cycle_lr(pct, lr, div, div_final, pct_start), float(sched(pct)), rel_tol=1e-5, abs_tol=1e-12)


def test_slanted_triangular_paper_shape():
    T, lr = 1000, 0.01 # equation 3 of Howard and Ruder (2018): peak at cut = T*cut_frac, floor lr/ratio at both ends
    lrs = [slanted_triangular_lr(t, T, lr) for t in range(T + 1)]
    assert max(range(T + 1), key=lrs.__getitem__) == 100
    assert math.isclose(lrs[0], lr/32) and math.isclose(lrs[-1], lr/32)


def test_unfreezing_schedule():
    steps = unfreezing_schedule(5, 2e-2, last_epochs=2, final_div=20) # the fastai IMDb recipe for a 3-layer AWD-LSTM
    assert [s[0] for s in steps] == [-1, -2, -3, -5]
    assert [round(s[2], 6) for s in steps] == [2e-2, 1e-2, 5e-3, 1e-3]
    flat = unfreezing_schedule(5, 2e-2, last_epochs=2, gradual=False)
    assert sum(s[1] for s in flat) == sum(s[1] for s in steps) # same number of epochs, so the ablation is fair
    with pytest.raises(ValueError, match="at least 3 layer groups"): unfreezing_schedule(2, 1e-2)


def test_sst2_sentences_are_the_treebank_sentences():
    sents = sst2_sentences(load_sst2("train").sentence)
    assert len(sents) == 6886
    assert sst2_sentences(["a b c", "b c", "c d", "a b c"]) == ["a b c", "c d"]


def test_tokenizer_is_offline():
    tok = offline_tokenizer()
    assert list(tok("It's GREAT")) == ["xxbos", "xxmaj", "it", "'s", "xxup", "great"]


def test_encoder_export_roundtrip(tmp_path):
    from fastai.text.all import AWD_LSTM, text_classifier_learner
    from llmcourse.ulmfit import lm_dataloaders, classifier_dataloaders, sst2_frame
    cfg = ULMFiTConfig.tiny(emb_sz=16, n_hid=32, bs=16, seq_len=24)
    train, dev = sst2_frame("train", 200), sst2_frame("dev", 40)
    vocab = lm_dataloaders(train.sentence, cfg, path=tmp_path).vocab
    dls = classifier_dataloaders(train, dev, vocab, cfg, path=tmp_path)
    learn = text_classifier_learner(dls, AWD_LSTM, config=cfg.awd_lstm(classifier=True), pretrained=False)
    enc, vocab2, cfg2 = load_exported_encoder(export_encoder(learn, tmp_path/"enc.pt", cfg))
    assert cfg2 == cfg and vocab2 == list(vocab)
    orig = learn.model[0].module.eval().cpu()
    x = torch.randint(0, len(vocab), (3, 10))
    orig.reset(); enc.reset()
    assert_close(enc(x), orig(x))


@pytest.mark.slow
def test_micro_run_and_encoder_export(tmp_path):
    cfg = ULMFiTConfig.tiny(emb_sz=16, n_hid=32, bs=16, seq_len=24, n_general=150, n_target=150, n_train=300, n_eval=60,
                            clas_last_epochs=1)
    res = ulmfit(cfg, start="offline", ablation=True, path=tmp_path)
    assert list(res.ablation.index) == ["ULMFiT (pretrained LM, gradual unfreezing)", "(a) no LM pretraining", "(b) no gradual unfreezing"]
    assert ((res.ablation >= 0) & (res.ablation <= 1)).all().all()
    assert res.metrics["target_lm_perplexity"] < len(res.target_lm.dls.vocab)
    enc, vocab, cfg2 = load_exported_encoder(export_encoder(res.classifier, tmp_path/"enc.pt", cfg))
    assert cfg2 == cfg and vocab == list(res.target_lm.dls.vocab)
    orig = res.classifier.model[0].module.eval().cpu()
    x = torch.randint(0, len(vocab), (3, 10))
    orig.reset(); enc.reset()
    assert_close(enc(x), orig(x))


def test_load_exported_encoder_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_encoder"): load_exported_encoder(tmp_path/"nope.pt")
    torch.save({"weights": 1}, tmp_path/"other.pt")
    with pytest.raises(ValueError, match="not an exported encoder"): load_exported_encoder(tmp_path/"other.pt")


def test_labelled_sentences_are_whole_and_nested():
    from llmcourse.ulmfit import labelled_sentences
    allof = labelled_sentences()
    assert len(allof) == 6886 and set(allof.sentence.str.strip()) == set(sst2_sentences(load_sst2("train").sentence))
    small, big = labelled_sentences(100, seed=1), labelled_sentences(500, seed=1)
    assert len(small) == 100 and small.sentence.isin(big.sentence).all() # the smaller set sits inside the larger
    assert not small.sentence.isin(labelled_sentences(100, seed=2).sentence).all()


def test_label_curve_summary_pairs_by_seed():
    import pandas as pd
    from llmcourse.ulmfit import label_curve_summary
    rows = [dict(labels=100, pretrained=p, seed=s, recipe="x", dev=0, test=t) for p, s, t in
            [(True, 0, 0.7), (True, 1, 0.6), (False, 0, 0.6), (False, 1, 0.56)]]
    s = label_curve_summary(pd.DataFrame(rows)).loc[100]
    assert math.isclose(s.pretrained, 0.65) and math.isclose(s.random, 0.58)
    assert math.isclose(s.gain, 0.07) and math.isclose(s.gain_min, 0.04) and math.isclose(s.gain_max, 0.1)
    assert math.isclose(s.gain_se, 0.03) # the standard error of the paired differences 0.1 and 0.04


def test_label_budget_curve_chooses_on_dev_and_scores_test_once(tmp_path, monkeypatch):
    "The recipe with the best mean dev accuracy is kept, and only its classifiers ever see the test set."
    import llmcourse.ulmfit as U
    cfg = ULMFiTConfig.tiny(emb_sz=16, n_hid=32, bs=16, seq_len=24, n_general=100, n_target=100, lm1_epochs=1, lm2_epochs=1)
    U.pretrain_general_lm(cfg, path=tmp_path); lm = U.finetune_target_lm(cfg, path=tmp_path)
    dev, test = U.sst2_frame("dev", 40), U.sst2_frame("test", 40)
    seen = []
    real = U.accuracy_on
    def spy(learn, df):
        acc = real(learn, df); seen.append((id(learn), df is test, acc)); return acc
    monkeypatch.setattr(U, "accuracy_on", spy)
    recipes = {"a": dict(clas_last_epochs=1), "b": dict(clas_lr=1e-4, clas_last_epochs=1)}
    curve = U.label_budget_curve(cfg, lm.dls.vocab, dev, test, budgets=(30,), seeds=(0, 1), recipes=recipes, min_epoch_rows=60, path=tmp_path)
    assert len(curve) == 4 and set(curve.labels) == {30} # 2 variants x 2 seeds
    on_dev = [(i, a) for i, t, a in seen if not t]; on_test = [i for i, t, _ in seen if t]
    assert len(on_dev) == 8 and len(on_test) == 4 # every recipe on dev; the test set once per kept classifier
    assert set(on_test) <= {i for i, _ in on_dev}
    for p in (True, False): # the kept recipe has the best mean dev accuracy of its variant
        means = [(on_dev[k][1] + on_dev[k + 1][1]) / 2 for k in ((0, 2) if p else (4, 6))] # recipes a, b
        assert math.isclose(curve[curve.pretrained == p].dev.mean(), max(means))
