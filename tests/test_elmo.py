"""ELMo (lesson 03): AllenNLP's own test vectors, the save/load round trip, weight and options files that are damaged or do
not fit each other, and the noun-or-verb probe's construction."""
import json, os

import h5py
import numpy as np
import pytest
import torch

os.environ.setdefault("LLMCOURSE_PROGRESS", "0")

from llmcourse.data import elmo_test_vectors
from llmcourse.elmo import (ElmoBiLm, ElmoConfig, ElmoOptionsError, ElmoWeightError, Elmo, NOUN_VERB_WORDS, PROBE_SPLITS,
                            batch_to_ids, choose_probe, embed_vocabulary, load_elmo, noun_verb_sentences, noun_verb_words,
                            read_elmo_test_vectors, remove_sentence_boundaries, save_elmo, vectors_at, word_bootstrap,
                            word_to_char_ids)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    "The fixture model is tiny and steps token by token in Python: extra threads only contend (see lesson 03)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def fixture_dir():
    return elmo_test_vectors()


def test_top_layer_matches_allennlp(fixture_dir):
    "AllenNLP runs the 3 x 10 sentences in batches of three (the i-th of each group), stateful; compare the top layer."
    bilm = load_elmo(fixture_dir/"options.json", fixture_dir/"lm_weights.hdf5", stateful=True)
    groups, expected = read_elmo_test_vectors(fixture_dir)
    worst = 0.0
    with torch.no_grad():
        for i in range(len(groups[0])):
            batch = [groups[k][i].split() for k in range(len(groups))]
            out = bilm(batch_to_ids(batch))
            top, mask = remove_sentence_boundaries(out.activations[-1], out.mask)
            assert mask.sum(-1).tolist() == [len(s) for s in batch]
            for k, s in enumerate(batch):
                got = top[k, :len(s)].numpy()
                assert got.shape == expected[k][i].shape
                # AllenNLP's own criterion: numpy.allclose(..., atol=1e-6), i.e. with numpy's default rtol=1e-5
                np.testing.assert_allclose(got, expected[k][i], atol=1e-6, rtol=1e-5)
                worst = max(worst, float(np.abs(got - expected[k][i]).max()))
    assert worst < 2e-6, worst


def test_stateless_differs_after_first_batch(fixture_dir):
    "The fixture was made with carried states: a stateless model matches the first batch only."
    groups, expected = read_elmo_test_vectors(fixture_dir)
    bilm = load_elmo(fixture_dir/"options.json", fixture_dir/"lm_weights.hdf5")
    with torch.no_grad():
        for i, close in [(0, True), (1, False)]:
            batch = [groups[k][i].split() for k in range(3)]
            out = bilm(batch_to_ids(batch))
            top, _ = remove_sentence_boundaries(out.activations[-1], out.mask)
            assert np.allclose(top[0, :len(batch[0])].numpy(), expected[0][i], atol=1e-5) == close


def test_token_layer_matches_allennlp(fixture_dir):
    bilm = load_elmo(fixture_dir/"options.json", fixture_dir/"lm_weights.hdf5")
    words = (fixture_dir/"vocab_test.txt").read_text().strip().split("\n")
    with h5py.File(fixture_dir/"elmo_token_embeddings.hdf5", "r") as fin: want = fin["embedding"][...]
    got = embed_vocabulary(bilm, words, batch_size=50).numpy()
    assert got.shape == want.shape == (458, 16)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)
    # <S> and </S> as words give the boundary vectors the encoder adds itself (AllenNLP's bos/eos test)
    tokens, mask = bilm.char_encoder(batch_to_ids([["hello"]]))
    torch.testing.assert_close(tokens[0, 0], embed_vocabulary(bilm, ["<S>"])[0])
    torch.testing.assert_close(tokens[0, 2], embed_vocabulary(bilm, ["</S>"])[0])


def test_elmo_shapes(fixture_dir):
    "AllenNLP's shallow Elmo test: two mixes, shapes (2, 7, 32), mask (2, 7)."
    elmo = Elmo(load_elmo(fixture_dir/"options.json", fixture_dir/"lm_weights.hdf5"), 2, dropout=0.0)
    out = elmo(batch_to_ids([["The", "sentence", "."], ["ELMo", "helps", "disambiguate", "ELMo", "from", "Elmo", "."]]))
    assert [list(r.shape) for r in out["elmo_representations"]] == [[2, 7, 32]] * 2
    assert list(out["mask"].shape) == [2, 7] and out["mask"].sum().item() == 10


@pytest.mark.parametrize("cfg", [ElmoConfig.tiny(), ElmoConfig(char_dim=4, filters=((1, 4), (3, 8)), n_highway=2,
                                                                lstm_dim=24, projection_dim=8, n_layers=3,
                                                                cell_clip=None, proj_clip=None, use_skip_connections=False)])
def test_save_load_round_trip(tmp_path, cfg):
    torch.manual_seed(0)
    bilm = ElmoBiLm(cfg).eval()
    with torch.no_grad():  # non-trivial biases everywhere, so a sign or gate-order slip cannot hide
        for p in bilm.parameters(): p.add_(0.1 * torch.randn_like(p))
    save_elmo(bilm, tmp_path/"options.json", tmp_path/"weights.hdf5")
    assert ElmoConfig.from_options(tmp_path/"options.json") == cfg
    back = load_elmo(tmp_path/"options.json", tmp_path/"weights.hdf5")
    ids = batch_to_ids([["a", "small", "round", "trip"], ["of", "ELMo"], ["weights", "é", "x" * 60]])
    with torch.no_grad():
        a, b = bilm(ids), back(ids)
    for x, y in zip(a.activations, b.activations): torch.testing.assert_close(x, y, atol=1e-6, rtol=0)
    # and saving what was loaded gives the same file contents
    save_elmo(back, tmp_path/"o2.json", tmp_path/"w2.hdf5")
    with h5py.File(tmp_path/"weights.hdf5") as f1, h5py.File(tmp_path/"w2.hdf5") as f2:
        names = []
        f1.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for n in names: np.testing.assert_allclose(f1[n][...], f2[n][...], atol=1e-6)


def test_fixture_round_trip(tmp_path, fixture_dir):
    "Loading AllenNLP's file and saving it again reproduces every tensor of the original file."
    bilm = load_elmo(fixture_dir/"options.json", fixture_dir/"lm_weights.hdf5")
    save_elmo(bilm, tmp_path/"options.json", tmp_path/"weights.hdf5")
    with h5py.File(fixture_dir/"lm_weights.hdf5") as f1, h5py.File(tmp_path/"weights.hdf5") as f2:
        names = []
        f1.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert sorted(names) == sorted(_datasets(f2))
        for n in names: np.testing.assert_allclose(f2[n][...], f1[n][...], atol=1e-6, err_msg=n)


def _datasets(f):
    out = []
    f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return out


def _write_options(tmp_path, fixture_dir, edit):
    opts = json.loads((fixture_dir/"options.json").read_text())
    edit(opts)
    p = tmp_path/"options.json"; p.write_text(json.dumps(opts)); return p


@pytest.mark.parametrize("edit,tensor,file_shape,options_shape", [
    (lambda o: o["char_cnn"]["embedding"].update(dim=8), "char_embed", "(261, 4)", "(261, 8)"),
    (lambda o: o["char_cnn"].update(filters=[[1, 4], [2, 8], [3, 16], [4, 32], [5, 32]]), "CNN/W_cnn_4", "(1, 5, 4, 64)", "(1, 5, 4, 32)"),
    (lambda o: o["lstm"].update(dim=32), "RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0", "(32, 256)", "(32, 128)"),
])
def test_mismatched_weights_name_tensor_and_shapes(tmp_path, fixture_dir, edit, tensor, file_shape, options_shape):
    opts = _write_options(tmp_path, fixture_dir, edit)
    with pytest.raises(ElmoWeightError) as e:
        load_elmo(opts, fixture_dir/"lm_weights.hdf5")
    msg = str(e.value)
    assert repr(tensor) in msg and file_shape in msg and options_shape in msg, msg


def test_missing_tensor_is_named(tmp_path, fixture_dir):
    opts = _write_options(tmp_path, fixture_dir, lambda o: o["lstm"].update(n_layers=3))
    with pytest.raises(ElmoWeightError, match="Cell2/LSTMCell/W_0' is missing"):
        load_elmo(opts, fixture_dir/"lm_weights.hdf5")


def test_char_ids():
    assert word_to_char_ids("a")[:4] == [259, 98, 260, 261]
    assert word_to_char_ids("é")[:4] == [259, 0xC3 + 1, 0xA9 + 1, 260]  # UTF-8 bytes
    ids = batch_to_ids([["a"], []])
    assert ids.shape == (2, 1, 50) and ids[1].sum() == 0


def test_stateful_batches_of_changing_size():
    "Carried states follow rows; a bigger batch starts its new rows from zeros, a smaller one leaves the other rows alone."
    torch.manual_seed(0)
    cfg = ElmoConfig(char_dim=4, filters=((1, 4), (2, 4)), lstm_dim=12, projection_dim=6)
    stateful, stateless = ElmoBiLm(cfg, stateful=True).eval(), ElmoBiLm(cfg).eval()
    stateless.load_state_dict(stateful.state_dict())
    with torch.no_grad():
        first = batch_to_ids([["a", "b"], ["c"]])
        torch.testing.assert_close(stateful(first).activations[2], stateless(first).activations[2])
        second = batch_to_ids([["d"], [], ["e", "f", "g"]])  # row 1 empty (still "<S> </S>", as in AllenNLP), row 2 new
        got, ref = stateful(second).activations[2], stateless(second).activations[2]
        assert not torch.allclose(got[0], ref[0])  # row 0 continued from "a b"
        torch.testing.assert_close(got[2], ref[2])  # row 2 started from zeros
        h_before = stateful.lstm.states[0].clone()
        stateful(batch_to_ids([["h"]]))  # a smaller batch leaves rows 1 and 2 alone
        assert stateful.lstm.states[0].shape[2] == 3
        torch.testing.assert_close(stateful.lstm.states[0][:, :, 1:], h_before[:, :, 1:])
        assert not torch.allclose(stateful.lstm.states[0][:, :, 0], h_before[:, :, 0])
        stateful.lstm.reset_states()
        torch.testing.assert_close(stateful(first).activations[2], stateless(first).activations[2])


# Bad files: each is made here from AllenNLP's fixture, and each must fail with an error that names the file and the fault.
def _options(fixture_dir, edit):
    o = json.loads((fixture_dir/"options.json").read_text()); edit(o); return json.dumps(o)

def _del(path):
    def edit(o):
        *head, last = path.split("."); d = o
        for k in head: d = d[k]
        del d[last]
    return edit

BAD_OPTIONS = [ # (name, file content (str, bytes or an edit of the fixture's options), error, what the message says)
    ("not json", "{oops", ElmoOptionsError, "not JSON"),
    ("empty", "", ElmoOptionsError, "not JSON"),
    ("binary", b"\xff\xfe\x00\x01", ElmoOptionsError, "not JSON"),
    ("a list", "[1, 2]", ElmoOptionsError, "holds a JSON list"),
    ("no lstm", _del("lstm"), ElmoOptionsError, "'lstm' is missing"),
    ("no filters", _del("char_cnn.filters"), ElmoOptionsError, "'char_cnn.filters' is missing"),
    ("no projection", _del("lstm.projection_dim"), ElmoOptionsError, "'lstm.projection_dim' is missing"),
    ("filters not pairs", lambda o: o["char_cnn"].update(filters=[[1], [2, 4]]), ElmoOptionsError, "[width, count]"),
    ("negative size", lambda o: o["lstm"].update(dim=-4), ElmoOptionsError, "lstm_dim must be a positive integer"),
    ("size as text", lambda o: o["lstm"].update(n_layers="2"), ElmoOptionsError, "n_layers must be a positive integer"),
]

@pytest.mark.parametrize("name,content,error,says", BAD_OPTIONS, ids=[c[0] for c in BAD_OPTIONS])
def test_bad_options_file_is_named(tmp_path, fixture_dir, name, content, error, says):
    p = tmp_path/"options.json"
    if callable(content): content = _options(fixture_dir, content)
    p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    with pytest.raises(error) as e: load_elmo(p, fixture_dir/"lm_weights.hdf5")
    assert str(p) in str(e.value) and says in str(e.value), str(e.value)

def test_missing_files_are_named(tmp_path, fixture_dir):
    with pytest.raises(FileNotFoundError, match="no such options file"): load_elmo(tmp_path/"nope.json", fixture_dir/"lm_weights.hdf5")
    with pytest.raises(FileNotFoundError, match="no such weight file"): load_elmo(fixture_dir/"options.json", tmp_path/"nope.hdf5")

def _rewrite(src, dst, change):
    "Copy every tensor of hdf5 `src` to `dst`; `change(fout, name, array)` writes each one (or something else)."
    with h5py.File(src) as fin, h5py.File(dst, "w") as fout:
        names = []; fin.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for n in names: change(fout, n, fin[n][...])

def _keep(fout, n, a): fout.create_dataset(n, data=a)
def _only(target, how): return lambda fout, n, a: how(fout, n, a) if n == target else _keep(fout, n, a)
def _nan(fout, n, a): a = a.copy(); a.flat[3] = np.nan; fout.create_dataset(n, data=a)

BAD_WEIGHTS = [ # (name, how to make the file from the fixture's bytes or tensors, what the message says)
    ("truncated", lambda b: b[:len(b) // 2], "truncated"),
    ("truncated near the end", lambda b: b[:-100], "truncated"),
    ("empty", lambda b: b"", "not a readable HDF5 file"),
    ("text", lambda b: b"options, not weights\n", "not a readable HDF5 file"),
    ("tensor renamed", _only("char_embed", lambda f, n, a: f.create_dataset("char_embedding", data=a)), "'char_embed' is missing"),
    ("wrong shape", _only("CNN_proj/W_proj", lambda f, n, a: f.create_dataset(n, data=a[:, :-1])), "has shape"),
    ("group for a tensor", _only("CNN_proj/b_proj", lambda f, n, a: f.create_group(n)), "is a group"),
    ("text for numbers", _only("CNN_proj/b_proj", lambda f, n, a: f.create_dataset(n, data=np.array([b"x"] * len(a)))), "not numbers"),
    ("NaN", _only("CNN/W_cnn_0", _nan), "NaN or infinite"),
]

@pytest.mark.parametrize("name,make,says", BAD_WEIGHTS, ids=[c[0] for c in BAD_WEIGHTS])
def test_bad_weight_file_is_named(tmp_path, fixture_dir, name, make, says):
    src, p = fixture_dir/"lm_weights.hdf5", tmp_path/"weights.hdf5"
    if make.__code__.co_argcount == 1: p.write_bytes(make(src.read_bytes()))
    else: _rewrite(src, p, make)
    with pytest.raises(ElmoWeightError) as e: load_elmo(fixture_dir/"options.json", p)
    assert str(p) in str(e.value) and says in str(e.value), str(e.value)

def test_rewritten_fixture_still_loads(tmp_path, fixture_dir):
    "The guard behind the table: an untouched copy made the same way loads and gives the fixture's vectors."
    _rewrite(fixture_dir/"lm_weights.hdf5", tmp_path/"w.hdf5", _keep)
    a, b = (load_elmo(fixture_dir/"options.json", w) for w in (fixture_dir/"lm_weights.hdf5", tmp_path/"w.hdf5"))
    ids = batch_to_ids([["a", "good", "film"]])
    with torch.no_grad(): torch.testing.assert_close(a(ids).activations[2], b(ids).activations[2], atol=0, rtol=0)


def test_noun_verb_probe_data():
    words = {s: noun_verb_words(s) for s in PROBE_SPLITS}
    assert sorted(sum(words.values(), [])) == sorted(NOUN_VERB_WORDS) # the splits share no word and miss none
    for s in PROBE_SPLITS:
        data = noun_verb_sentences(s)
        assert all(t[p] in words[s] for t, p, _ in data)
        for w in words[s]: # each word as often a noun (0) as a verb (1)
            labels = [l for t, p, l in data if t[p] == w]
            assert len(labels) == 12 and sum(labels) == 6
    assert noun_verb_sentences("test") == noun_verb_sentences("test") and noun_verb_sentences("test", seed=1) != noun_verb_sentences("test")
    with pytest.raises(ValueError, match="split must be one of"): noun_verb_words("dev")

def test_static_probe_is_held_to_half(fixture_dir):
    "One vector per word, each word used both ways: any probe on the token layer is right on exactly half; context is not held."
    bilm = load_elmo(fixture_dir/"options.json", fixture_dir/"lm_weights.hdf5")
    sets = {s: noun_verb_sentences(s, per_word=2) for s in PROBE_SPLITS}
    x = {s: vectors_at(bilm, [t for t, _, _ in d], [p for _, p, _ in d]) for s, d in sets.items()}
    y = {s: torch.tensor([l for _, _, l in d]) for s, d in sets.items()}
    static, _ = choose_probe((x["train"], y["train"]), (x["valid"], y["valid"]), layers=(0,), weight_decays=(1e-4,))
    assert (static.predict(x["test"]) == y["test"]).float().mean().item() == 0.5
    ctx, table = choose_probe((x["train"], y["train"]), (x["valid"], y["valid"]), layers=(None, 2), weight_decays=(1e-4,))
    assert len(table) == 2 and table.valid_accuracy.max() == (ctx.predict(x["valid"]) == y["valid"]).float().mean().item()
    assert (ctx.predict(x["test"]) == y["test"]).float().mean().item() > 0.6 # even AllenNLP's random test model reads the slot

def test_word_bootstrap():
    lo, hi = word_bootstrap([1, 1, 0, 0] * 10, [w for w in "abcdefghij" for _ in range(4)])
    assert lo == hi == 0.5 # every word half right: resampling words cannot move it
    lo, hi = word_bootstrap([1] * 20 + [0] * 20, [w for w in "abcdefghij" for _ in range(4)])
    assert 0.15 < lo < 0.5 < hi < 0.85
