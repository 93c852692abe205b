"""ControlNet (49_controlnet): zero residuals change nothing, the zero-initialisation check, and bad control images."""
import tempfile
from pathlib import Path
import pytest
import torch
from miniai.latent import ldm_unet, TextConditioner, LDMConfig
from miniai.text import Tokenizer, TextEncoder, TextConfig
from miniai.vae import VAE, VAEConfig
from miniai.pipeline import StableDiffusion
from miniai.controlnet import (unet_forward_with_residuals, ControlNet, ControlledUNet, ControlNetPipeline, shapes_controls,
                               object_masks, mask_iou, save_controlnet, load_controlnet)
from miniai.captions import make_shapes

@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    tok = Tokenizer.build(['a large red circle on the left', 'a small blue square at the top'])
    text = TextConditioner(TextEncoder(TextConfig(vocab_size=len(tok), context_len=tok.context_len, d=16, n_heads=2, n_layers=1)), tok)
    unet = ldm_unet((4, 8, 8), 16, nfs=(16, 32), n_layers=1).eval()
    vae = VAE(VAEConfig(in_ch=3, nfs=(8, 16, 16), norm_groups=4)).eval()
    return dict(text=text, unet=unet, vae=vae, pipe=StableDiffusion(vae, text, unet, LDMConfig()))

def _inputs(tiny, B=3):
    g = torch.Generator().manual_seed(1)
    ctx, mask = tiny['text'](['a large red circle on the left'] * B)
    return torch.randn(B, 4, 8, 8, generator=g), torch.rand(B, generator=g), ctx, mask

def test_zero_residuals_are_the_unet(tiny):
    x, t, ctx, mask = _inputs(tiny)
    u = tiny['unet']
    with torch.no_grad():
        ref = u(x, t, context=ctx, context_mask=mask)
        zeros = [torch.zeros(3, 16, 8, 8), torch.zeros(3, 32, 4, 4)]
        assert torch.equal(unet_forward_with_residuals(u, x, t, None, ctx, mask), ref)
        assert torch.equal(unet_forward_with_residuals(u, x, t, None, ctx, mask, zeros, torch.zeros(3, 32, 4, 4)), ref)
    with pytest.raises(ValueError, match='one tensor per skip'): unet_forward_with_residuals(u, x, t, None, ctx, mask, zeros[:1])

def test_zero_init_equals_frozen(tiny):
    x, t, ctx, mask = _inputs(tiny)
    cn = ControlNet(tiny['unet'])
    with torch.no_grad():
        out = ControlledUNet(tiny['unet'], cn)(x, t, None, ctx, mask, shapes_controls(3))
        ref = tiny['unet'](x, t, context=ctx, context_mask=mask)
    assert (out - ref).abs().max().item() == 0
    p = tiny['pipe']
    cp = ControlNetPipeline.from_pipeline(p, cn)
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(cp(['a red circle'] * 2, steps=2, generator=g(), control_image=shapes_controls(2)), p(['a red circle'] * 2, steps=2, generator=g()))
    assert cp.unet is tiny['unet']

@pytest.mark.parametrize('shape,msg', [((3, 1, 64, 64), 'must be (1, 32, 32)'), ((3, 1, 16, 16), 'F.interpolate'),
                                       ((3, 3, 32, 32), 'must be (1, 32, 32)'), ((32,), 'must be (1, 32, 32)'),
                                       ((2, 1, 32, 32), '2 control images for a batch of 3')])
def test_wrong_control_image(tiny, shape, msg):
    x, t, ctx, mask = _inputs(tiny)
    cn = ControlNet(tiny['unet'])
    with pytest.raises(ValueError) as e: cn(x, t, torch.zeros(shape), context=ctx, context_mask=mask)
    assert msg in str(e.value)

def test_wrong_control_image_in_pipeline(tiny):
    cp = ControlNetPipeline.from_pipeline(tiny['pipe'], ControlNet(tiny['unet']))
    with pytest.raises(ValueError, match='resize it'): cp(['a red circle'], steps=1, control_image=torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match=r'\[-1, 1\]'): cp(['a red circle'], steps=1, control_image=torch.full((1, 1, 32, 32), 2.))
    assert cp.unet is tiny['unet']                  # restored after the error

def test_bad_construction(tiny):
    with pytest.raises(ValueError, match='power of 2'): ControlNet(tiny['unet'], control_size=24)
    with pytest.raises(ValueError, match='power of 2'): ControlNet(tiny['unet'], control_size=4)

def test_silhouettes_match_images():
    d = make_shapes(128, 3, 'test')
    iou = mask_iou(object_masks(d['image']), shapes_controls(128, 3, 'test')[:, 0] > 0)
    assert iou.mean() > 0.85

def test_save_load(tiny):
    cn = ControlNet(tiny['unet'], stem_nfs=(8,))
    with torch.no_grad(): cn.mid_out.weight.add_(0.5)
    with tempfile.TemporaryDirectory() as d:
        cn2 = load_controlnet(save_controlnet(cn, Path(d)/'c.safetensors'), device='cpu')
        assert cn2.cfg == cn.cfg and cn2.unet_cfg == cn.unet_cfg
        assert all(torch.equal(a, b) for a, b in zip(cn.state_dict().values(), cn2.state_dict().values()))
