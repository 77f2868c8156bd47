"""What the lesson 09c bench scripts share: the lesson's invoices, made exactly as its cell makes them, encoded for
training and validation (the test templates are generated but never encoded), and the entity F1 per field."""
import numpy as np
import transformers
from llmcourse.data import minilm_dir
from llmcourse.invoices import FIELDS, make_documents, make_templates, ocr_noise, split_templates
from llmcourse.layoutlm import encode_document, entity_f1

def lesson_data(draw:int=1, test:bool=False):
    """The tokenizer and the encoded train and valid documents: 800 training templates x 3, 8 validation templates x 12.
    `draw` 1 is the lesson's own template draw; other values draw other templates (and values, fonts, noise) the same way.
    `test`: also the 8 test templates x 12, made after the others as the lesson makes them (only for a final scoring)."""
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
    split = split_templates(make_templates(816, seed=draw), n_valid=8, n_test=8)
    noise_rng = np.random.default_rng(draw)
    docs = {name: [ocr_noise(d, noise_rng) for d in make_documents(ts, 3 if name == "train" else 12, seed=100 * (draw - 1) + k + 1)]
            for k, (name, ts) in enumerate(split.items()) if test or name != "test"}  # test: generated only when asked for
    return tok, {name: [encode_document(tok, d) for d in ds] for name, ds in docs.items()}

def per_field(true, pred):
    "Entity F1 of each field alone, from word-tag lists."
    only = lambda tags, f: [[t if t[2:] == f else "O" for t in d] for d in tags]
    return {f: entity_f1(only(true, f), only(pred, f)) for f in FIELDS}
