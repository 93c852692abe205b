"""miniai.xattn in the U-Net: context checks, masks, per-resolution configuration, and oracles."""
import pytest
import torch
from torch import nn
from miniai.unet import UNet2D, UNetConfig, SelfAttention2D
from miniai.xattn import MultiHeadAttention, TransformerBlock2D, masked_attention

CFG = UNetConfig(nfs=(8, 16, 32), n_layers=1, attn_res=(16,), tf_res=(8,), img_size=32, n_heads=2, ctx_dim=6)


@pytest.fixture(scope='module')
def unet():
    torch.manual_seed(0)
    return UNet2D(CFG).eval()


def test_blocks_per_resolution(unet):
    kinds = [type(a).__name__ for lvl in unet.downs for a in lvl.attns]
    assert kinds == ['Identity', 'SelfAttention2D', 'TransformerBlock2D']   # 32x32: none, 16x16: self-attn, 8x8: transformer
    assert type(unet.mid_attn).__name__ == 'TransformerBlock2D'               # the middle works at 8x8 too


@pytest.mark.parametrize('ctx, msg', [
    (torch.randn(2, 3, 5), 'context has width 5 but this U-Net was built with ctx_dim=6'),
    (torch.randn(2, 3, 7), 'context has width 7 but this U-Net was built with ctx_dim=6'),
    (torch.randn(2, 6), r'must be a \(B, L, D\) tensor with B=2'),
    (torch.randn(3, 1, 6), r'must be a \(B, L, D\) tensor with B=2'),
])
def test_bad_context(unet, ctx, msg):
    with pytest.raises(ValueError, match=msg): unet(torch.randn(2, 1, 32, 32), 1., context=ctx)


@pytest.mark.parametrize('mask, msg', [
    (torch.tensor([[True, False], [False, False]]), r'no real token for item\(s\) \[1\]'),
    (torch.ones(2, 2), 'bool tensor'),
    (torch.ones(2, 3, dtype=torch.bool), r'\(2, 2\) bool tensor'),
])
def test_bad_mask(unet, mask, msg):
    with pytest.raises(ValueError, match=msg): unet(torch.randn(2, 1, 32, 32), 1., context=torch.randn(2, 2, 6), context_mask=mask)


def test_mask_without_context(unet):
    with pytest.raises(ValueError, match='without a context'): unet(torch.randn(1, 1, 32, 32), 1., context_mask=torch.ones(1, 2, dtype=torch.bool))


def test_context_to_model_without_cross_attention():
    with pytest.raises(ValueError, match='has no cross-attention'): UNet2D(CFG, tf_res=())(torch.randn(1, 1, 32, 32), 1., context=torch.randn(1, 2, 6))
    with pytest.raises(ValueError, match='has no cross-attention'): UNet2D(CFG, ctx_dim=None)(torch.randn(1, 1, 32, 32), 1., context=torch.randn(1, 2, 6))


def test_overlap_refused():
    with pytest.raises(ValueError, match='in both attn_res and tf_res'): UNet2D(CFG, attn_res=(8,))


def test_padding_is_ignored(unet):
    x, ctx = torch.randn(2, 1, 32, 32), torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    with torch.no_grad():
        a = unet(x, 1., context=ctx, context_mask=mask)
        ctx2 = ctx.clone(); ctx2[1, 2:] = 1e3
        torch.testing.assert_close(unet(x, 1., context=ctx2, context_mask=mask), a)
        torch.testing.assert_close(unet(x[1:], 1., context=ctx[1:, :2])[0], a[1], rtol=1e-5, atol=1e-5)


def test_masked_attention_against_mha():
    torch.manual_seed(0)
    a = MultiHeadAttention(8, 2, ctx_dim=5)
    m = nn.MultiheadAttention(8, 2, kdim=5, vdim=5, batch_first=True)
    with torch.no_grad():
        m.q_proj_weight.copy_(a.q.weight); m.k_proj_weight.copy_(a.k.weight); m.v_proj_weight.copy_(a.v.weight)
        m.in_proj_bias.copy_(torch.cat([a.q.bias, a.k.bias, a.v.bias]))
        m.out_proj.weight.copy_(a.proj.weight); m.out_proj.bias.copy_(a.proj.bias)
    x, ctx = torch.randn(4, 9, 8), torch.randn(4, 6, 5)
    mask = torch.arange(6)[None] < torch.tensor([1, 6, 3, 2])[:, None]
    torch.testing.assert_close(a(x, ctx, mask), m(x, ctx, ctx, key_padding_mask=~mask, need_weights=False)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('ch, heads', [(16, 3), (24, 5)])
def test_heads_must_divide_channels(ch, heads):
    with pytest.raises(ValueError, match=f'{ch} channels cannot be split into n_heads={heads}'): TransformerBlock2D(ch, heads, 4)
    with pytest.raises(ValueError, match=f'cannot be split into n_heads={heads}'):
        UNet2D(UNetConfig(nfs=(ch, ch), n_layers=1, attn_res=(), tf_res=(32,), n_heads=heads, ctx_dim=4))
