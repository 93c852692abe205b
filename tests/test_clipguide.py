"Bad input and conformance of `miniai.clipguide` on tiny untrained models (no cached stack needed)."
import math
import pytest, torch
from miniai.text import Tokenizer
from miniai.clip import clip_model
from miniai.vae import VAE, VAEConfig
from miniai.samplers import SAMPLERS, get_sampler
from miniai.clipguide import clip_pixels, clip_similarity, prompt_embeddings, CLIPGuidance

CAPS = ['a large red circle in the centre', 'a small blue square at the top']

@pytest.fixture(scope='module')
def parts():
    torch.manual_seed(0)
    tok = Tokenizer.build(CAPS)
    clip = clip_model(tok, n_in=3, d=16, n_layers=1, n_heads=2, nfs=(8, 16), stem=8, d_embed=16).eval()
    vae = VAE(VAEConfig(in_ch=3, nfs=(8, 8), norm_groups=2, scale_factor=0.7)).eval()
    model = lambda x, sigma: x / (1 + sigma.view(-1, 1, 1, 1) ** 2)      # the Gaussian (sigma_data=1) denoiser
    return tok, clip, vae, model, prompt_embeddings(clip, tok, CAPS)

def test_bad_input(parts):
    tok, clip, vae, model, temb = parts
    for bad in (math.nan, math.inf, -math.inf, None, '3', True):
        with pytest.raises(ValueError, match='guidance scale must be a finite number'): CLIPGuidance(model, clip, vae, temb, scale=bad)
    with pytest.raises(ValueError, match='prompt list is empty'): prompt_embeddings(clip, tok, [])
    with pytest.raises(TypeError, match='must be strings'): prompt_embeddings(clip, tok, [CAPS[0], None])
    with pytest.raises(ValueError, match="on must be 'denoised' or 'x'"): CLIPGuidance(model, clip, vae, temb, on='z')
    with pytest.raises(ValueError, match='temb must be prompt embeddings'): CLIPGuidance(model, clip, vae, temb[0])
    x = torch.randn(3, *vae.cfg.latent_shape)
    with pytest.raises(ValueError, match='2 prompt embeddings for a batch of 3'): CLIPGuidance(model, clip, vae, temb)(x, torch.ones(3))

@pytest.mark.parametrize('on', ['denoised', 'x'])
def test_gradient_matches_finite_difference(parts, on):
    tok, clip, vae, model, temb = parts
    g = torch.Generator().manual_seed(1)
    x, v, sig = torch.randn(2, *vae.cfg.latent_shape, generator=g), torch.randn(2, *vae.cfg.latent_shape, generator=g), torch.tensor([3., 0.3])
    cg = CLIPGuidance(model, clip, vae, temb, scale=2., on=on)
    d, gr = cg.guidance(x, sig)
    f = (lambda x: clip_similarity(clip, vae, model(x, sig), temb).sum()) if on == 'x' else (lambda z: clip_similarity(clip, vae, z, temb).sum())
    at, h = (x if on == 'x' else d).double(), 1e-4
    clip.double(); vae.double()
    try:
        with torch.no_grad(): fd = (f(at + h * v.double()) - f(at - h * v.double())) / (2 * h)
    finally: clip.float(); vae.float()
    assert abs((gr * v).sum().item() - fd.item()) < 1e-3 * max(1, abs(fd.item()))
    w = sig.view(-1, 1, 1, 1) ** 2 if on == 'x' else 1
    torch.testing.assert_close(cg(x, sig), d + 2. * w * gr)
    torch.testing.assert_close(CLIPGuidance(model, clip, vae, temb, scale=0)(x, sig), model(x, sig))

def test_every_sampler(parts):
    tok, clip, vae, model, temb = parts
    sigmas = torch.tensor([10., 3., 1., 0.3, 0.])
    for name in SAMPLERS:
        x = torch.randn(2, *vae.cfg.latent_shape, generator=torch.Generator().manual_seed(0)) * sigmas[0]
        out = get_sampler(name)(CLIPGuidance(model, clip, vae, temb, scale=1.), x, sigmas, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.isfinite().all(), name

def test_clip_pixels_match_embed_images(parts):
    from miniai.clip import embed_images
    tok, clip, vae, model, temb = parts
    u8 = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(clip.encode_image(clip_pixels(clip, u8.float() / 127.5 - 1)), embed_images(clip, u8), atol=1e-5, rtol=1e-4)
