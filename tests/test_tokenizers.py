"""Byte-level BPE against Hugging Face `tokenizers` and `transformers` (the references), round trips on arbitrary
Unicode (hypothesis), and the WordPiece / SentencePiece helpers that lessons 07 and 08 import."""
import collections, json
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from llmcourse.tokenizers import (BPETokenizer, CharTokenizer, WordTokenizer, GPT2_SPLIT_PATTERN, load_bpe, pretokenize,
                                  save_bpe, train_hf_bpe, hf_merges, train_sentencepiece, train_wordpiece,
                                  learn_bpe_merges, learn_bpe_merges_fast, Tokenizer)

# Text with many scripts, so that merges form inside multi-byte characters (a token holding 2 of an emoji's 4 bytes).
MIXED = ("Naïve café owners in Zürich serve crème brûlée. Привет, мир! Γειά σου κόσμε. 日本語のテキストです。"
         "مرحبا بالعالم 😀😀🎉 👩‍👩‍👧 ﬁne ‘quotes’ — dashes\tand\r\nnewlines   trailing  \n") * 40

@pytest.fixture(scope="module")
def mixed_bpe():
    return BPETokenizer.train(MIXED, 400)

@pytest.fixture(scope="module")
def shakespeare(mirror_folder):
    "Through the mirror fixture, so that a missing mirror fails the test and says what to set (never a skip)."
    from llmcourse.data import load_tiny_shakespeare
    return load_tiny_shakespeare()

@pytest.fixture(scope="module")
def shakespeare_bpe(shakespeare):
    return BPETokenizer.train(shakespeare[:300_000], 512)

def test_mixed_bpe_has_tokens_inside_characters(mixed_bpe):
    "The property test below is only strong if some tokens are not whole UTF-8 characters."
    partial = [b for b in mixed_bpe.vocab.values() if len(b) > 1 and not _is_utf8(b)]
    assert partial, "expected merges inside multi-byte characters"

def _is_utf8(b):
    try: b.decode("utf-8"); return True
    except UnicodeDecodeError: return False

@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=st.text())
def test_decode_encode_roundtrip_any_unicode(mixed_bpe, s):
    assert mixed_bpe.decode(mixed_bpe.encode(s)) == s

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_roundtrip_shakespeare_bpe(shakespeare_bpe, s):
    assert shakespeare_bpe.decode(shakespeare_bpe.encode(s)) == s

def test_pretokenize_joins_back_and_matches_hf():
    from tokenizers import pre_tokenizers
    from llmcourse.tokenizers import BYTE_DECODER
    hf = pre_tokenizers.ByteLevel(add_prefix_space=False)
    for s in MIXED.splitlines():
        ours = pretokenize(s)
        assert "".join(ours) == s
        theirs = [bytes(BYTE_DECODER[c] for c in p).decode("utf-8") for p, _ in hf.pre_tokenize_str(s)]
        assert ours == theirs

@pytest.mark.parametrize("vocab_size", [256, 300, 600])
def test_merges_equal_hf_tokenizers(shakespeare, vocab_size):
    "Same text, same vocabulary size: the merges of `tokenizers`' trainer, in the same order."
    text = shakespeare[:150_000]
    ours = BPETokenizer.train(text, vocab_size)
    hf = train_hf_bpe(text, vocab_size)
    assert [(ours.token_str(a), ours.token_str(b)) for a, b in ours.merges] == hf_merges(hf)
    assert hf.encode(shakespeare[-20_000:]).ids == ours.encode(shakespeare[-20_000:])

def test_merges_equal_hf_on_mixed_scripts():
    ours, hf = BPETokenizer.train(MIXED, 350), train_hf_bpe(MIXED, 350)
    assert [(ours.token_str(a), ours.token_str(b)) for a, b in ours.merges] == hf_merges(hf)

@pytest.fixture(scope="module")
def gpt2_fast(shakespeare_bpe, tmp_path_factory):
    from transformers import GPT2TokenizerFast
    return GPT2TokenizerFast.from_pretrained(save_bpe(shakespeare_bpe, tmp_path_factory.mktemp("bpe")))

def test_gpt2_tokenizer_fast_whole_corpus(shakespeare, shakespeare_bpe, gpt2_fast):
    assert gpt2_fast(shakespeare)["input_ids"] == shakespeare_bpe.encode(shakespeare)

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<|>"), max_size=200))
def test_gpt2_tokenizer_fast_any_text(shakespeare_bpe, gpt2_fast, s):
    "`<|endoftext|>` in the text is special to transformers (not to our `encode`), so `<|>` are left out."
    assert gpt2_fast(s)["input_ids"] == shakespeare_bpe.encode(s)

def test_save_load_roundtrip(mixed_bpe, tmp_path):
    d = save_bpe(mixed_bpe, tmp_path/"tok")
    vocab = json.loads((d/"vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == mixed_bpe.vocab_size and vocab["<|endoftext|>"] == mixed_bpe.eot_id
    back = load_bpe(d)
    assert back.merges == mixed_bpe.merges
    assert back.encode(MIXED) == mixed_bpe.encode(MIXED)

def _rewrite(d, name, f):
    p = d/name; p.write_bytes(f(p.read_bytes()))

def _swap_lines(b, i, j):
    lines = b.decode().splitlines(); lines[i], lines[j] = lines[j], lines[i]
    return ("\n".join(lines) + "\n").encode()

def _vocab_edit(f):
    return lambda b: json.dumps(f(json.loads(b.decode()))).encode()

def _resplit_a_merge(d, other):
    "Rewrite one merge so that it still makes its token, from a piece that vocab.json does not have (a hand-edited file)."
    vocab = json.loads((d/"vocab.json").read_text(encoding="utf-8"))
    lines = (d/"merges.txt").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#version"): continue
        whole = line.replace(" ", "")
        for cut in range(1, len(whole)):
            a, b = whole[:cut], whole[cut:]
            if a not in vocab or b not in vocab:
                lines[i] = f"{a} {b}"; (d/"merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8"); return
    raise AssertionError("every merge splits only into known tokens: pick another corpus for this case")

# (what is wrong, how to make it from good files in folder d, the file and words the error must name)
BAD_FILES = [
    ("no merges.txt", lambda d, other: (d/"merges.txt").unlink(), FileNotFoundError, "needs vocab.json and merges.txt"),
    ("vocab.json cut short", lambda d, other: _rewrite(d, "vocab.json", lambda b: b[:len(b)//2]), ValueError, "vocab.json is not valid JSON"),
    ("vocab.json not JSON at all", lambda d, other: _rewrite(d, "vocab.json", lambda b: b"\x89PNG\r\n\x1a\n"), ValueError, "vocab.json is not valid JSON"),
    ("vocab.json a list", lambda d, other: _rewrite(d, "vocab.json", lambda b: b"[1, 2, 3]"), ValueError, "vocab.json must be one JSON object"),
    ("vocab.json ids as strings", lambda d, other: _rewrite(d, "vocab.json", _vocab_edit(lambda v: {k: str(i) for k, i in v.items()})), ValueError, "vocab.json must be one JSON object"),
    ("byte ids shifted", lambda d, other: _rewrite(d, "vocab.json", _vocab_edit(lambda v: {k: i + 1 for k, i in v.items()})), ValueError, "256 byte tokens"),
    ("two merged ids swapped", lambda d, other: _rewrite(d, "vocab.json", _vocab_edit(
        lambda v: {k: {256: 257, 257: 256}.get(i, i) for k, i in v.items()})), ValueError, "is merge 0, which must make the token with id 256"),
    ("merges.txt cut short", lambda d, other: _rewrite(d, "merges.txt", lambda b: b"\n".join(b.splitlines()[:-10]) + b"\n"), ValueError, "cut short or from another tokenizer"),
    ("vocab.json cut to fewer tokens", lambda d, other: _rewrite(d, "vocab.json", _vocab_edit(lambda v: {k: i for k, i in v.items() if i < 300})), ValueError, "merges.txt line 46"),
    ("merges.txt lines swapped", lambda d, other: _rewrite(d, "merges.txt", lambda b: _swap_lines(b, 1, 2)), ValueError, "merges.txt line 2"),
    ("merges.txt three tokens on a line", lambda d, other: _rewrite(d, "merges.txt", lambda b: b.replace(b"\n", b" x\n", 2)), ValueError, "is not two tokens separated by one space"),
    ("merges.txt splits a token into a piece vocab.json lacks", _resplit_a_merge, ValueError, "vocab.json does not have"),
    ("merges.txt not UTF-8", lambda d, other: _rewrite(d, "merges.txt", lambda b: b + b"\xff\xfe\n"), ValueError, "merges.txt is not UTF-8"),
    ("merges.txt of another tokenizer", lambda d, other: (d/"merges.txt").write_bytes((other/"merges.txt").read_bytes()), ValueError, "from different tokenizers"),
    ("vocab.json of another tokenizer", lambda d, other: (d/"vocab.json").write_bytes((other/"vocab.json").read_bytes()), ValueError, "from different tokenizers"),
]

@pytest.mark.parametrize("what, spoil, error, message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_load_bpe_rejects_bad_files(mixed_bpe, tmp_path, what, spoil, error, message):
    "Files that are corrupt, cut short or from two different tokenizers raise an error naming the file, never a deep one."
    d = save_bpe(mixed_bpe, tmp_path/"tok")
    other = save_bpe(BPETokenizer.train("the cat sat on the mat " * 50 + "Zürich 😀 " * 20, 350), tmp_path/"other")
    load_bpe(d) # the good files load
    spoil(d, other)
    with pytest.raises(error) as e: load_bpe(d)
    assert message in str(e.value), str(e.value)
    if error is ValueError: assert str(d) in str(e.value) # it names the file

@settings(max_examples=300, deadline=None)
@given(table=st.dictionaries(st.text(alphabet="ab\u00e9", min_size=1, max_size=10), st.integers(1, 6), min_size=1, max_size=15),
       n=st.integers(1, 30), min_count=st.integers(1, 3))
def test_fast_trainer_equals_the_definition(table, n, min_count):
    "Incremental counts and a heap give exactly the merges of the readable trainer (overlaps like 'aaa', 'abab' included)."
    assert learn_bpe_merges_fast(table, n, min_count) == learn_bpe_merges(table, n, min_count)

def test_both_trainers_equal_hf_on_shakespeare(shakespeare):
    "The lesson's corpus (a slice), the definition and the fast trainer against Hugging Face `tokenizers`."
    text = shakespeare[:200_000]
    counts = collections.Counter(pretokenize(text))
    hf = hf_merges(train_hf_bpe(text, 700))
    slow, fast = learn_bpe_merges(counts, 700 - 256), learn_bpe_merges_fast(counts, 700 - 256)
    assert fast == slow
    named = BPETokenizer(fast)
    assert [(named.token_str(a), named.token_str(b)) for a, b in fast] == hf

def test_every_tokenizer_has_the_interface(shakespeare):
    for tok in (CharTokenizer.train(shakespeare), WordTokenizer.train(shakespeare[:50_000]), BPETokenizer.train(shakespeare[:50_000], 300)):
        assert isinstance(tok, Tokenizer)
        s = shakespeare[:300]
        assert tok.decode(tok.encode(s)) == s and "".join(tok.pieces(s)) == s
        assert max(tok.encode(s)) < tok.vocab_size

def test_bad_input_messages():
    with pytest.raises(ValueError, match="at least the 256 byte tokens"): BPETokenizer.train("abc", 255)
    with pytest.raises(KeyError, match="'z' is not in"): CharTokenizer.train("abc").encode("abz")
    with pytest.raises(ValueError, match="'unigram', 'bpe'"): train_sentencepiece(["a b c"], 10, model_type="wordpiece")

def test_bpe_stops_when_pairs_run_out():
    tok = BPETokenizer.train("ab ab ab", 1000)
    assert [tok.vocab[256 + k] for k in range(len(tok.merges))] == [b"ab", b" ab"]
    assert tok.decode(tok.encode("ab ab")) == "ab ab"

def test_word_tokenizer_unknowns():
    tok = WordTokenizer.train("the cat the dog the cat", vocab_size=3)
    assert tok.itos == ["<unk>", " cat", " the"] # the two most frequent pre-tokens; "the" (once) is not kept
    assert tok.encode("the cat") == [0, 1] and tok.decode([0, 1]) == "<unk> cat"

def test_wordpiece_files_and_cache(shakespeare, home):
    from transformers import BertTokenizer
    lines = shakespeare[:100_000].splitlines()
    tok = train_wordpiece(lines, 500)
    cached = list((home/"tokenizers").glob("wordpiece-500-*"))
    assert len(cached) == 1 and (cached[0]/"vocab.txt").exists()
    again = train_wordpiece(lines, 500) # from the cache
    slow = BertTokenizer(str(cached[0]/"vocab.txt")) # transformers' Python BERT tokenizer from vocab.txt alone
    text = shakespeare[200_000:205_000]
    assert tok(text)["input_ids"] == again(text)["input_ids"] == slow(text)["input_ids"]
    assert tok.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]
    assert len(tok) == 500

@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece(shakespeare, home, model_type):
    lines = [l for l in shakespeare[:100_000].splitlines() if l.strip()]
    sp = train_sentencepiece(lines, 400, model_type=model_type, byte_fallback=True) # held-out text has a Z; bytes cover it
    assert sp.get_piece_size() == 400 and sp.model_file.endswith("spm.model")
    assert str(home) in sp.model_file
    assert [sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()] == [0, 1, 2, 3]
    held_out = [l.strip() for l in shakespeare[-5_000:].splitlines() if l.strip()] # SentencePiece drops outer spaces
    assert sp.decode(sp.encode(held_out)) == held_out

def test_out_dir_is_retrained_when_settings_change(shakespeare, tmp_path):
    lines = shakespeare[:50_000].splitlines()
    assert len(train_wordpiece(lines, 300, out_dir=tmp_path/"wp")) == 300
    assert len(train_wordpiece(lines, 350, out_dir=tmp_path/"wp")) == 350 # not the 300-token one left in the folder
    assert train_sentencepiece(lines, 200, out_dir=tmp_path/"sp").get_piece_size() == 200
    assert train_sentencepiece(lines, 250, out_dir=tmp_path/"sp").get_piece_size() == 250
