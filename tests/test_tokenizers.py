"""Byte-level BPE against Hugging Face `tokenizers` and `transformers` (the references), round trips on arbitrary
Unicode (hypothesis), and the WordPiece / SentencePiece helpers that lessons 07 and 08 import."""
import json
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from llmcourse.tokenizers import (BPETokenizer, CharTokenizer, WordTokenizer, GPT2_SPLIT_PATTERN, load_bpe, pretokenize,
                                  save_bpe, train_hf_bpe, hf_merges, train_sentencepiece, train_wordpiece)

# Text with many scripts, so that merges form inside multi-byte characters (a token holding 2 of an emoji's 4 bytes).
MIXED = ("Naïve café owners in Zürich serve crème brûlée. Привет, мир! Γειά σου κόσμε. 日本語のテキストです。"
         "مرحبا بالعالم 😀😀🎉 👩‍👩‍👧 ﬁne ‘quotes’ — dashes\tand\r\nnewlines   trailing  \n") * 40

@pytest.fixture(scope="module")
def mixed_bpe():
    return BPETokenizer.train(MIXED, 400)

@pytest.fixture(scope="module")
def shakespeare():
    from llmcourse.data import load_tiny_shakespeare, ResourceUnavailable
    try: return load_tiny_shakespeare()
    except ResourceUnavailable as e: pytest.skip(f"tiny Shakespeare is not available offline: {e}")

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

def test_load_bpe_bad_files(mixed_bpe, tmp_path):
    with pytest.raises(FileNotFoundError, match="needs vocab.json and merges.txt"): load_bpe(tmp_path)
    d = save_bpe(mixed_bpe, tmp_path/"tok")
    vocab = json.loads((d/"vocab.json").read_text(encoding="utf-8"))
    first = mixed_bpe.token_str(256)
    vocab[first], vocab[mixed_bpe.token_str(257)] = 257, 256 # swap two merged tokens' ids
    (d/"vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ValueError, match="merges.txt line 1"): load_bpe(d)
    vocab = {k: v + 1 for k, v in vocab.items()}
    (d/"vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ValueError, match="256 byte tokens"): load_bpe(d)

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
