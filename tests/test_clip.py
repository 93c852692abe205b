"`miniai.clip`: the loss against a hand-written oracle, the temperature's clamp, a tiny fit that learns, save/load."
import math
import pytest, torch
import torch.nn.functional as F
from miniai.text import Tokenizer, load_text_encoder
from miniai.clip import (clip_loss, clip_model, clip_dls, train_clip, embed_images, embed_texts, recall_at_k,
                         save_clip, load_clip, shapes_pairs, zero_shot)

def test_loss_matches_oracle_and_gradients():
    torch.manual_seed(0)
    img = torch.randn(6, 8, requires_grad=True); txt = torch.randn(6, 8, requires_grad=True)
    s = torch.tensor(7., requires_grad=True)
    i, t = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    l = s * i @ t.T
    y = torch.arange(6)
    ref = (F.cross_entropy(l, y) + F.cross_entropy(l.T, y)) / 2
    got = clip_loss((i, t, s))
    torch.testing.assert_close(got, ref)
    g1 = torch.autograd.grad(got, (img, txt, s), retain_graph=True); g2 = torch.autograd.grad(ref, (img, txt, s))
    for a, b in zip(g1, g2): torch.testing.assert_close(a, b)

def test_scale_is_clamped():
    tok = Tokenizer.build(['a red circle'], context_len=8)
    m = clip_model(tok, n_in=3, d=16, n_layers=1, nfs=(8, 16), stem=8, d_embed=16)
    assert math.isclose(m.scale.item(), 1 / 0.07, rel_tol=1e-5)
    with torch.no_grad(): m.log_scale.fill_(10.)
    assert math.isclose(m.scale.item(), 100., rel_tol=1e-5)
    m.scale.backward()
    assert m.log_scale.grad.item() == 0                 # at the clamp the temperature stops moving

def test_wrong_image_channels():
    tok = Tokenizer.build(['a red circle'], context_len=8)
    m = clip_model(tok, n_in=3, d=16, n_layers=1, nfs=(8, 16), stem=8, d_embed=16)
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'): m.encode_image(torch.zeros(2, 1, 32, 32))

def test_tiny_fit_learns_and_roundtrips(tmp_path):
    x, at, caps = shapes_pairs('train', 512); xt, att, capst = shapes_pairs('test', 128)
    tok = Tokenizer.build(caps, context_len=24)
    m = clip_model(tok, n_in=3, d=32, n_layers=1, nfs=(8, 16), stem=8, d_embed=32)
    dls = clip_dls(tok, (x, caps), (xt, capst), m.cfg, batch_size=64)
    b = next(iter(dls.train))
    assert len(b) == 3 and torch.equal(b[1], b[2]) and b[0].shape == (64, 3, 32, 32)
    with torch.no_grad(): before = clip_loss(m(*b[:2]), b[2]).item()   # train mode: batch statistics in the norms
    learn = train_clip(m, dls, epochs=2, lr=3e-3, progress=False, device='cpu')
    m.train()
    with torch.no_grad(): after = clip_loss(m(*b[:2]), b[2]).item()
    tr = [h['loss'] for h in learn.history if h['train'] == 'train']
    assert after < before and tr[-1] < tr[0]
    r = recall_at_k(embed_texts(m, tok, capst) @ embed_images(m, xt).T, ks=(1, 5, 128))
    assert r['R@128'] == 1.0 and r['R@1'] <= r['R@5']
    p = save_clip(m, tok, tmp_path/'c.safetensors', r)
    m2, tok2 = load_clip(p, device='cpu')
    torch.testing.assert_close(embed_images(m2, xt[:8]), embed_images(m, xt[:8]))
    enc, _ = load_text_encoder(p, device='cpu', prefix='text.')
    ids = tok.encode(capst[:4])[0]
    with torch.no_grad(): torch.testing.assert_close(enc(ids)[1], m.text(ids)[1])
    with pytest.raises(ValueError, match='non-empty list'): zero_shot(m, tok, xt[:4], [['a red circle'], []])
