"Lesson 09c: LayoutLM against transformers on random configs, a wrong mapping that must fail, bad input, entity F1, FUNSD files."
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import numpy as np
import pytest
import torch
import transformers
from torch.testing import assert_close
from llmcourse.invoices import LABELS, make_documents, make_templates, normalize_box, ocr_noise, split_templates
from llmcourse.layoutlm import (LayoutLM, LayoutLMConfig, LayoutLMTagger, bootstrap_f1, entity_counts, entity_f1, hf_layoutlm_config,
                                init_box_tables, layoutlm_config_from_hf, layoutlm_from_hf, layoutlm_from_pretrained,
                                layoutlm_state_dict_from_hf, layoutlm_to_hf, read_funsd, save_funsd)

transformers.logging.set_verbosity_error()
TOL = dict(atol=1e-5, rtol=1e-5) # the lesson's parity tolerance

def inputs(vocab, B=3, T=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    xy = torch.randint(0, 900, (B, T, 2), generator=g)
    bbox = torch.cat([xy, xy + torch.randint(0, 100, (B, T, 2), generator=g)], -1)
    mask = torch.ones(B, T, dtype=torch.long); mask[-1, T - 3:] = 0
    return ids, bbox, mask

SIZES = [dict(d_model=32, n_heads=2, n_layers=1, d_ff=64), dict(d_model=64, n_heads=4, n_layers=3, d_ff=96),
         dict(d_model=48, n_heads=3, n_layers=2, d_ff=128, max_2d_positions=1200, type_vocab_size=3)]

@pytest.mark.parametrize("sizes", SIZES)
def test_parity_both_ways(sizes):
    torch.manual_seed(1)
    cfg = LayoutLMConfig.tiny(vocab_size=150, **sizes)
    ids, bbox, mask = inputs(150)
    real = mask.bool()
    tt = torch.randint(0, cfg.type_vocab_size, ids.shape)
    hf = transformers.LayoutLMModel(hf_layoutlm_config(cfg)).eval()
    ours = layoutlm_from_hf(hf).eval()
    with torch.no_grad():
        want = hf(input_ids=ids, bbox=bbox, attention_mask=mask, token_type_ids=tt)
        got = ours(ids, bbox, mask, tt)
        assert_close(got.last_hidden_state[real], want.last_hidden_state[real], **TOL)
        assert_close(got.pooler_output, want.pooler_output, **TOL)
    hft = transformers.LayoutLMForTokenClassification(hf_layoutlm_config(cfg, num_labels=5)).eval()
    tagger = layoutlm_from_hf(hft).eval()
    init_box_tables(tagger)  # new weights on our side, then back to transformers
    back = layoutlm_to_hf(tagger)
    with torch.no_grad():
        assert_close(back(input_ids=ids, bbox=bbox, attention_mask=mask).logits[real], tagger(ids, bbox, mask)[real], **TOL)

def test_wrong_mapping_fails():
    "Swapping two same-shaped tables (x and y; height and width) must break parity, or the check proves nothing."
    torch.manual_seed(2)
    cfg = LayoutLMConfig.tiny(vocab_size=100)
    hf = transformers.LayoutLMModel(hf_layoutlm_config(cfg)).eval()
    ids, bbox, mask = inputs(100)
    real = mask.bool()
    with torch.no_grad(): want = hf(input_ids=ids, bbox=bbox, attention_mask=mask).last_hidden_state[real]
    sd = layoutlm_state_dict_from_hf(hf.state_dict())
    for a, b in (("x", "y"), ("h", "w")):
        bad = dict(sd)
        bad[f"bert.embeddings.{a}.weight"], bad[f"bert.embeddings.{b}.weight"] = sd[f"bert.embeddings.{b}.weight"], sd[f"bert.embeddings.{a}.weight"]
        wrong = LayoutLM(layoutlm_config_from_hf(hf.config)).eval()
        wrong.load_state_dict(bad)
        with torch.no_grad(), pytest.raises(AssertionError):
            assert_close(wrong(ids, bbox, mask).last_hidden_state[real], want, **TOL)

@pytest.mark.parametrize("buckets,max_distance,heads", [(64, 256, 4), (32, 128, 2)])
def test_spatial_bias_equals_layoutlmv3(buckets, max_distance, heads):
    "The 2-D bias (bottom edges, as transformers measures) equals LayoutLMv3's `_cal_2d_pos_emb` on the same tables; x and y swapped must not."
    from llmcourse.layoutlm import SpatialBias
    torch.manual_seed(3)
    v3 = transformers.LayoutLMv3Model(transformers.LayoutLMv3Config(hidden_size=16 * heads, num_hidden_layers=1, num_attention_heads=heads,
                                      intermediate_size=32, visual_embed=False, has_spatial_attention_bias=True,
                                      rel_2d_pos_bins=buckets, max_rel_2d_pos=max_distance)).eval()
    for t in (v3.encoder.rel_pos_x_bias, v3.encoder.rel_pos_y_bias): torch.nn.init.normal_(t.weight)
    cfg = LayoutLMConfig.tiny(vocab_size=50, d_model=16 * heads, n_heads=heads, bias_buckets=buckets, bias_max_distance=max_distance, bias_y_edge="bottom")
    ours, swapped = SpatialBias(cfg), SpatialBias(cfg)
    with torch.no_grad():
        ours.x.weight.copy_(v3.encoder.rel_pos_x_bias.weight.T); ours.y.weight.copy_(v3.encoder.rel_pos_y_bias.weight.T)
        swapped.x.weight.copy_(ours.y.weight); swapped.y.weight.copy_(ours.x.weight)
        _, bbox, _ = inputs(50, T=17)
        want = v3.encoder._cal_2d_pos_emb(bbox)  # (B, h, T, T)
        assert_close(ours(bbox).view(want.shape), want, atol=1e-6, rtol=0)
        with pytest.raises(AssertionError): assert_close(swapped(bbox).view(want.shape), want, atol=1e-6, rtol=0)

def test_spatial_bias_starts_at_zero_and_sees_only_differences():
    torch.manual_seed(4)
    ids, bbox, mask = inputs(120)
    with_bias = LayoutLMTagger(LayoutLMConfig.tiny(vocab_size=120, spatial_bias=True), use_layout=False).eval()
    plain = LayoutLMTagger(LayoutLMConfig.tiny(vocab_size=120), use_layout=False).eval()
    missing, unexpected = plain.load_state_dict(with_bias.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"layoutlm.spatial.x.weight", "layoutlm.spatial.y.weight"}
    with torch.no_grad():
        assert_close(with_bias(ids, bbox, mask), plain(ids, bbox, mask))  # zero tables: the model without the bias
        for t in (with_bias.layoutlm.spatial.x, with_bias.layoutlm.spatial.y): t.weight.normal_()
        assert_close(with_bias(ids, bbox + torch.tensor([30, 60, 30, 60]), mask), with_bias(ids, bbox, mask))
        assert not torch.allclose(with_bias(ids, bbox.flip(1), mask), with_bias(ids, bbox, mask))
    with pytest.raises(ValueError, match="needs the boxes"): with_bias(ids, None, mask)
    with pytest.raises(ValueError, match="no spatial attention bias"): layoutlm_to_hf(with_bias)
    with pytest.raises(ValueError, match="top' or 'bottom"): LayoutLMTagger(LayoutLMConfig.tiny(spatial_bias=True, bias_y_edge="centre"))

def test_pretrained_folder(tmp_path):
    torch.manual_seed(3)
    cfg = LayoutLMConfig.tiny(vocab_size=100)
    hf = transformers.LayoutLMForTokenClassification(hf_layoutlm_config(cfg, num_labels=4)).eval()
    hf.save_pretrained(tmp_path)
    enc = layoutlm_from_pretrained(tmp_path)
    ids, bbox, mask = inputs(100)
    with torch.no_grad():
        want = hf.layoutlm(input_ids=ids, bbox=bbox, attention_mask=mask).last_hidden_state
        assert_close(enc(ids, bbox, mask).last_hidden_state[mask.bool()], want[mask.bool()], **TOL)
    assert isinstance(layoutlm_from_pretrained(tmp_path, n_labels=7), LayoutLMTagger)
    with pytest.raises(FileNotFoundError, match="config.json"): layoutlm_from_pretrained(tmp_path / "nothing")

def test_bad_boxes_are_explained():
    m = LayoutLM(LayoutLMConfig.tiny(vocab_size=50)).eval()
    ids, bbox, _ = inputs(50)
    with pytest.raises(ValueError, match="normalise"): m(ids, bbox * 3)
    with pytest.raises(ValueError, match="x1 < x0"): m(ids, bbox[..., [2, 1, 0, 3]])
    with pytest.raises(ValueError, match="not inside"): normalize_box((0, 0, 900, 10), 850, 1100)

def test_entity_f1_against_seqeval_readme():
    # seqeval's README: f1_score of these two is 0.50
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    assert entity_f1(y_true, y_pred) == pytest.approx(0.50)
    f1, lo, hi = bootstrap_f1(entity_counts(y_true * 20, y_pred * 20))
    assert lo <= f1 <= hi and f1 == pytest.approx(0.5)

def test_entity_f1_against_seqeval():
    "Random BIO sequences (stray I- tags, type changes, entities at the ends): our F1 is seqeval's, to 1e-9."
    try: from seqeval.metrics import f1_score
    except ImportError: raise ImportError("tests/test_layoutlm.py checks entity F1 against seqeval: pip install 'llmcourse[dev]' (or seqeval)")
    rng = np.random.default_rng(0)
    tags = ["O", "B-A", "I-A", "B-B", "I-B"]
    for _ in range(200):
        true = [[str(t) for t in rng.choice(tags, int(rng.integers(1, 12)))] for _ in range(int(rng.integers(1, 5)))]
        pred = [[str(t) if rng.random() < 0.3 else u for t, u in zip(rng.choice(tags, len(d)), d)] for d in true]
        if not any(t != "O" for d in true + pred for t in d): continue  # seqeval warns and returns 0 when there is nothing
        assert entity_f1(true, pred) == pytest.approx(f1_score(true, pred), abs=1e-9), (true, pred)

class _Oracle(torch.nn.Module):
    "A 'model' whose logits are the encoded labels themselves: what a perfect tagger would say for every piece."
    def __init__(self, encoded):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.labels = {tuple(e["input_ids"]): e["labels"] for e in encoded}
    def forward(self, input_ids, bbox, attention_mask):
        out = torch.zeros(*input_ids.shape, len(LABELS))
        for i, row in enumerate(input_ids):
            labels = self.labels[tuple(row[attention_mask[i].bool()].tolist())]
            for j, l in enumerate(labels): out[i, j, max(l, 0)] = 1.0  # -100 (special tokens) reads as O
        return out

@pytest.mark.parametrize("first_piece_only", [False, True])
def test_pipeline_round_trip(first_piece_only):
    "Words -> pieces -> labels -> perfect piece predictions -> words -> entities gives back every field of every page."
    from llmcourse.data import minilm_dir
    from llmcourse.layoutlm import encode_document, entity_spans, predict_tags, word_tags
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
    docs = [ocr_noise(d, np.random.default_rng(i), p_split=0.3) for i, d in enumerate(make_documents(make_templates(4, seed=3), 3, seed=0, fonts=["default"]))]
    enc = [encode_document(tok, d) for d in docs]
    if first_piece_only:  # the loss on each word's first piece only: later pieces carry the ignored label
        enc = [e | dict(labels=[l if f else -100 for l, f in zip(e["labels"], e["first"])]) for e in enc]
    for d, e in zip(docs, enc): assert word_tags(e) == d.labels  # one tag per word, the page's own
    pred = predict_tags(_Oracle(enc), enc, batch_size=5)
    assert pred == [d.labels for d in docs]
    assert entity_f1([d.labels for d in docs], pred) == 1.0
    assert all(len(entity_spans(d.labels)) == 3 for d in docs)  # one number, one date, one total on every page

def test_documents_and_split():
    ts = make_templates(12, seed=0)
    split = split_templates(ts, 2, 2)
    assert [len(v) for v in split.values()] == [8, 2, 2]
    assert not {t.name for t in split["train"]} & {t.name for t in split["test"]}
    docs = make_documents(split["test"], 2, seed=0, fonts=["default"])
    for d in docs:
        assert len(d.words) == len(d.boxes) == len(d.labels)
        assert all(l in LABELS for l in d.labels)
        assert all(0 <= v <= 1000 for b in d.norm_boxes() for v in b)
        assert sum(l == "B-TOTAL" for l in d.labels) == 1
        n = ocr_noise(d, np.random.default_rng(0), p_split=1.0)
        assert [l[2:] for l in n.labels if l.startswith("B-")] == [l[2:] for l in d.labels if l.startswith("B-")]
    with pytest.raises(ValueError, match="leave none"): split_templates(ts, 6, 6)

def test_funsd_round_trip(tmp_path):
    docs = make_documents(make_templates(2, seed=5), 2, seed=0, fonts=["default"])
    back = read_funsd(save_funsd(docs, tmp_path))
    for a, b in zip(docs, back):
        assert (b.words, b.boxes, b.labels, b.size) == (a.words, a.boxes, a.labels, a.size)
    with pytest.raises(FileNotFoundError, match="annotations"): read_funsd(tmp_path / "missing")

def test_training_runs_from_the_module():
    "The module alone (no notebook namespace) can encode, train a few steps and predict."
    from llmcourse.data import minilm_dir
    from llmcourse.layoutlm import encode_document, predict_tags, train_tagger, word_tags
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
    docs = make_documents(make_templates(3, seed=0), 2, seed=0, fonts=["default"])
    enc = [encode_document(tok, d) for d in docs]
    m = init_box_tables(LayoutLMTagger(LayoutLMConfig.tiny(n_layers=1)))
    m, hist = train_tagger(m, enc[:4], enc[4:], steps=4, batch_size=2, eval_every=2)
    assert len(hist.series("valid_f1")[0]) == 2
    pred = predict_tags(m, enc[4:])
    assert [len(p) for p in pred] == [len(word_tags(e)) for e in enc[4:]]

def test_layoutlm_from_bert_is_the_bert_it_started_from():
    "A tagger started from a BERT, its box tables at zero, gives transformers' BertModel's states after its first k blocks."
    from llmcourse.bert import BertConfig, bert_from_hf, hf_bert_config
    from llmcourse.layoutlm import layoutlm_from_bert
    torch.manual_seed(2)
    hf = transformers.BertModel(hf_bert_config(BertConfig.tiny(vocab_size=120, n_layers=3))).eval()
    ids, bbox, mask = inputs(120)
    real = mask.bool()
    tagger = layoutlm_from_bert(bert_from_hf(hf), n_layers=2).eval()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
        got = tagger.layoutlm(ids, bbox, mask).last_hidden_state
        assert not torch.allclose(got[real], want[real], atol=1e-3)  # the new box tables change the states
        for t in "xyhw": getattr(tagger.layoutlm.bert.embeddings, t).weight.zero_()
        assert_close(tagger.layoutlm(ids, bbox, mask).last_hidden_state[real], want[real], **TOL)
    assert len(tagger.layoutlm.bert.layers) == 2 and tagger.classifier.out_features == len(LABELS)
    with pytest.raises(ValueError, match="3 blocks"): layoutlm_from_bert(bert_from_hf(hf), n_layers=4)
