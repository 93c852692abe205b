"Bad inputs and conformance of `miniai.text`: the tokenizer's edge cases, attention against nn.MultiheadAttention, save/load."
import json, warnings
import pytest, torch
from torch import nn
from safetensors.torch import save
from miniai.text import Tokenizer, SPECIALS, SelfAttention, TextConfig, TextEncoder, save_text_encoder, load_text_encoder

CAPS = ['a small red circle on the left', 'a large blue square above a green triangle']

def test_empty_caption_is_a_clear_error():
    tok = Tokenizer.build(CAPS)
    for bad in ('', '   ', '\n'):
        with pytest.raises(ValueError, match='empty caption'): tok.encode(['a red circle', bad])

def test_non_string_caption():
    with pytest.raises(TypeError, match='must be a string'): Tokenizer.build(CAPS).encode([None])

def test_truncation_warns_once_and_keeps_eos():
    tok = Tokenizer.build(CAPS, context_len=6)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        for _ in range(3): ids, mask = tok.encode(CAPS)
    assert len(w) == 1 and 'truncated' in str(w[0].message)
    assert tok.n_truncated == 6
    assert (ids[:, -1] == tok.eos).all() and mask.all()

def test_unknown_words_are_counted():
    tok = Tokenizer.build(CAPS)
    ids, _ = tok.encode(['a purple hexagon', 'a red circle'])
    assert tok.n_unk == 2 and (ids == tok.unk).sum() == 2

def test_save_load_roundtrip(tmp_path):
    tok = Tokenizer.build(CAPS, context_len=20)
    tok2 = Tokenizer.load(tok.save(tmp_path/'t.json'))
    assert tok2.vocab == tok.vocab and tok2.context_len == 20
    assert torch.equal(tok2.encode(CAPS)[0], tok.encode(CAPS)[0])
    (tmp_path/'bad.json').write_text(json.dumps({'kind': 'bpe'}))
    with pytest.raises(ValueError, match='not a word-level'): Tokenizer.load(tmp_path/'bad.json')

def test_bad_vocab():
    with pytest.raises(ValueError, match='special tokens'): Tokenizer(['x'] + list(SPECIALS))
    with pytest.raises(ValueError, match='duplicate'): Tokenizer(list(SPECIALS) + ['a', 'a'])
    with pytest.raises(ValueError, match='context_len'): Tokenizer(list(SPECIALS), context_len=2)

@pytest.mark.parametrize('d,nh,causal', [(8, 1, False), (24, 3, True), (32, 8, False)])
def test_attention_matches_torch(d, nh, causal):
    torch.manual_seed(d)
    att, ref = SelfAttention(d, nh), nn.MultiheadAttention(d, nh, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(att.in_proj.weight); ref.in_proj_bias.copy_(att.in_proj.bias)
        ref.out_proj.weight.copy_(att.out_proj.weight); ref.out_proj.bias.copy_(att.out_proj.bias)
    x = torch.randn(4, 9, d, requires_grad=True)
    m = torch.arange(9)[None] < torch.tensor([[9], [4], [1], [6]])
    am = torch.ones(9, 9, dtype=torch.bool).triu(1) if causal else None
    a, r = att(x, m, causal=causal), ref(x, x, x, key_padding_mask=~m, attn_mask=am, need_weights=False)[0]
    torch.testing.assert_close(a, r, atol=1e-5, rtol=1e-5)
    ga, = torch.autograd.grad(a.sum(), x); gr, = torch.autograd.grad(r.sum(), x)
    torch.testing.assert_close(ga, gr, atol=1e-5, rtol=1e-5)

def test_encoder_outputs_and_errors():
    tok = Tokenizer.build(CAPS, context_len=12)
    enc = TextEncoder(TextConfig(len(tok), 12, d=16, n_heads=2, n_layers=1)).eval()
    ids, mask = tok.encode(CAPS)
    h, pooled = enc(ids, mask)
    assert h.shape == (2, 12, 16) and pooled.shape == (2, 16)
    with pytest.raises(ValueError, match='<eos>'): enc(torch.ones(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match='LongTensor'): enc(ids.float())

def test_save_load_text_encoder(tmp_path):
    tok = Tokenizer.build(CAPS, context_len=12)
    enc = TextEncoder(TextConfig(len(tok), 12, d=16, n_heads=2, n_layers=1)).eval()
    p = save_text_encoder(enc, tok, tmp_path/'enc.safetensors')
    assert not list(tmp_path.glob('.*.tmp'))                      # the atomic write left no temporary file
    enc2, tok2 = load_text_encoder(p, device='cpu')
    ids = tok.encode(CAPS)[0]
    with torch.no_grad(): torch.testing.assert_close(enc2(ids)[0], enc(ids)[0])
    # weights that do not match the stored config: a clear error, not a silent partial load
    big = TextEncoder(TextConfig(len(tok), 12, d=32, n_heads=2, n_layers=1))
    meta = {'miniai_model': 'TextEncoder', 'text_config': json.dumps(vars(enc.cfg)), 'tokenizer': json.dumps(tok.to_dict())}
    (tmp_path/'wrong.safetensors').write_bytes(save({k: v.contiguous() for k, v in big.state_dict().items()}, metadata=meta))
    with pytest.raises(ValueError, match='do not match'): load_text_encoder(tmp_path/'wrong.safetensors')
