"""`miniai.pipeline.StableDiffusion`: every bad input gets a clear error; save/load round trip; every sampler runs.

A tiny randomly initialised pipeline (no training) keeps this file to a few seconds: the checks are about the
pipeline's plumbing, not the quality of its images (nbs/36 and nbs/37 measure that on the trained stack)."""
import math, warnings
import pytest, torch
from miniai.captions import make_shapes
from miniai.text import Tokenizer, TextEncoder, TextConfig
from miniai.vae import VAE, VAEConfig
from miniai.latent import TextConditioner, LDMConfig, ldm_unet
from miniai.samplers import SAMPLERS
from miniai.pipeline import StableDiffusion

CAPS = make_shapes(64, 0, 'train')['caption']
PROMPT = 'a large red circle in the centre'

def tiny_pipe(context_len:int=24, seed:int=0) -> StableDiffusion:
    "A random pipeline with the stack's shapes (images 3x32x32, latents 4x8x8) and a fresh tokenizer (so it warns again)."
    torch.manual_seed(seed)
    tok = Tokenizer.build(CAPS, context_len=context_len)
    enc = TextEncoder(TextConfig(vocab_size=len(tok), context_len=context_len, d=16, n_heads=2, n_layers=1, eos_id=tok.eos))
    vae = VAE(VAEConfig(in_ch=3, img_size=32, latent_ch=4, nfs=(8, 16, 16), norm_groups=2))
    unet = ldm_unet(vae.cfg.latent_shape, enc.cfg.d, nfs=(16, 32), n_layers=1, n_heads=2)
    return StableDiffusion(vae, TextConditioner(enc, tok), unet, LDMConfig()).to('cpu')

@pytest.fixture(scope='module')
def pipe(): return tiny_pipe()

@pytest.fixture(scope='module')
def images(): return torch.as_tensor(make_shapes(2, 0, 'test')['image'])   # uint8 (2, 3, 32, 32)

g = lambda s=0: torch.Generator().manual_seed(s)

def test_shapes(pipe):
    assert pipe.image_shape == (3, 32, 32) and pipe.latent_shape == (4, 8, 8)
    out = pipe([PROMPT] * 2, steps=2, generator=g())
    assert out.shape == (2, 3, 32, 32) and out.min() >= -1 and out.max() <= 1

# --- bad input: one test per item of issue 10's list, on each entry point that takes it

def test_empty_prompt_list(pipe, images):
    for call in (lambda: pipe([]), lambda: pipe.img2img(images, [], strength=0.5),
                 lambda: pipe.inpaint(images, torch.ones(32, 32), []), lambda: pipe.encode_prompts([])):
        with pytest.raises(ValueError, match='prompt list is empty'): call()

@pytest.mark.parametrize('strength', [-0.1, 1.5, float('nan'), float('inf'), '0.5', True, None])
def test_strength_outside_unit_interval(pipe, images, strength):
    with pytest.raises(ValueError, match=r'strength must be a number in \[0, 1\]'):
        pipe.img2img(images, [PROMPT] * 2, strength=strength)

@pytest.mark.parametrize('strength', [0, 0., 0.5, 1, 1.])
def test_strength_in_range_runs(pipe, images, strength):
    out = pipe.img2img(images, [PROMPT] * 2, strength=strength, steps=2, generator=g())
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()

@pytest.mark.parametrize('shape', [(28, 28), (32, 16), (1, 1, 16, 16), (1, 3, 32, 32), (2, 2, 32, 32)])
def test_mask_size_mismatch(pipe, images, shape):
    with pytest.raises(ValueError, match='mask must be'): pipe.inpaint(images, torch.ones(shape), [PROMPT] * 2)

def test_mask_out_of_range(pipe, images):
    with pytest.raises(ValueError, match=r'mask values must be in \[0, 1\]'):
        pipe.inpaint(images, torch.full((32, 32), 2.), [PROMPT] * 2)

@pytest.mark.parametrize('shape', [(32, 32), (1, 32, 32), (1, 1, 32, 32), (2, 1, 32, 32)])
def test_mask_shapes_accepted(pipe, images, shape):
    out = pipe.inpaint(images, torch.ones(shape), [PROMPT] * 2, steps=2, generator=g())
    assert out.shape == (2, 3, 32, 32)

def test_unknown_sampler(pipe, images):
    for call in (lambda: pipe(PROMPT, sampler='plms', steps=2), lambda: pipe.img2img(images, [PROMPT] * 2, 0.5, sampler='plms', steps=2),
                 lambda: pipe.inpaint(images, torch.ones(32, 32), [PROMPT] * 2, sampler='plms', steps=2)):
        with pytest.raises(ValueError, match="unknown sampler 'plms'; choose one of"): call()

def test_long_prompt_truncated_with_warning():
    p = tiny_pipe(context_len=8)                                     # <bos>, 6 words, <eos>
    long = ' '.join([PROMPT] * 4)
    with pytest.warns(UserWarning, match='truncated'): out = p(long, steps=2, generator=g())
    assert out.shape == (1, 3, 32, 32) and p.text.tok.n_truncated == 1
    ids = p.text.ids([long])
    assert ids.shape == (1, 8) and ids[0, -1].item() == p.text.tok.eos   # truncated, yet still ends with <eos>
    with warnings.catch_warnings():                                  # the warning is shown once per tokenizer
        warnings.simplefilter('error'); p(long, steps=1, generator=g())

@pytest.mark.parametrize('shape', [(2, 3, 28, 28), (2, 1, 32, 32), (3, 32), (2, 3, 32, 32, 1)])
def test_image_wrong_size(pipe, shape):
    for call in (lambda x: pipe.img2img(x, [PROMPT] * 2, 0.5), lambda x: pipe.inpaint(x, torch.ones(32, 32), [PROMPT] * 2),
                 pipe.encode, pipe.check_images):
        with pytest.raises(ValueError, match=r'images must be \(B, 3, 32, 32\)'): call(torch.zeros(shape))

@pytest.mark.parametrize('lo,hi', [(0., 255.), (-2., 1.), (0., 1.5)])
def test_image_wrong_range(pipe, lo, hi):
    x = torch.linspace(lo, hi, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    for call in (lambda x: pipe.img2img(x, [PROMPT] * 2, 0.5), lambda x: pipe.inpaint(x, torch.ones(32, 32), [PROMPT] * 2), pipe.encode):
        with pytest.raises(ValueError, match=r'must be in \[-1, 1\] \(or uint8'): call(x)

def test_uint8_and_unit_range_images_accepted(pipe, images):
    x = pipe.check_images(images)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(pipe.check_images(x), x)
    torch.testing.assert_close(pipe.check_images(images[0]), x[:1])     # one image (C, H, W) is a batch of one

def test_images_prompts_count_mismatch(pipe, images):
    with pytest.raises(ValueError, match='2 images for 3 prompts'): pipe.img2img(images, [PROMPT] * 3, 0.5)
    with pytest.raises(ValueError, match='2 images for 3 prompts'): pipe.inpaint(images, torch.ones(32, 32), [PROMPT] * 3)

@pytest.mark.parametrize('scale', [float('nan'), float('inf'), -float('inf'), '3', None])
def test_non_finite_guidance_scale(pipe, images, scale):
    for call in (lambda: pipe(PROMPT, guidance_scale=scale, steps=2), lambda: pipe.img2img(images, [PROMPT] * 2, 0.5, guidance_scale=scale, steps=2),
                 lambda: pipe.inpaint(images, torch.ones(32, 32), [PROMPT] * 2, guidance_scale=scale, steps=2)):
        with pytest.raises(ValueError, match='guidance scale must be a finite number'): call()

def test_other_bad_inputs(pipe):
    with pytest.raises(ValueError, match='steps must be an integer >= 1'): pipe(PROMPT, steps=0)
    with pytest.raises(ValueError, match='latents must be'): pipe(PROMPT, latents=torch.randn(1, 4, 16, 16))
    with pytest.raises(ValueError, match='negative prompts'): pipe([PROMPT] * 2, negative_prompt=['x'] * 3)

# --- save/load and samplers

def test_save_load_roundtrip(pipe, images, tmp_path):
    p = pipe.save(tmp_path/'sd.safetensors')
    assert p.is_file() and not list(tmp_path.glob('*.tmp*'))          # written atomically: no temporary left over
    p2 = StableDiffusion.load(p, device='cpu')
    for k in ('vae', 'unet'):
        a, b = getattr(pipe, k).state_dict(), getattr(p2, k).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    assert p2.text.tok.vocab == pipe.text.tok.vocab and p2.cfg == pipe.cfg
    torch.testing.assert_close(p2([PROMPT] * 2, steps=3, generator=g(1)), pipe([PROMPT] * 2, steps=3, generator=g(1)))
    torch.testing.assert_close(p2.img2img(images, [PROMPT] * 2, 0.5, steps=3, generator=g(1)),
                               pipe.img2img(images, [PROMPT] * 2, 0.5, steps=3, generator=g(1)))

def test_load_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='no saved pipeline'): StableDiffusion.load(tmp_path/'none.safetensors')
    from safetensors.torch import save_file
    save_file({'x': torch.zeros(1)}, str(tmp_path/'other.safetensors'))
    with pytest.raises(ValueError, match='not written by StableDiffusion.save'): StableDiffusion.load(tmp_path/'other.safetensors')

@pytest.mark.parametrize('sampler', list(SAMPLERS))
def test_every_sampler_runs(pipe, images, sampler):
    a = pipe([PROMPT] * 2, sampler=sampler, steps=3, generator=g(2))
    assert a.shape == (2, 3, 32, 32) and torch.isfinite(a).all() and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(pipe([PROMPT] * 2, sampler=sampler, steps=3, generator=g(2)), a)   # seeded: reproducible
    b = pipe.img2img(images, [PROMPT] * 2, 0.5, sampler=sampler, steps=3, generator=g(2))
    m = torch.zeros(32, 32); m[:, 16:] = 1
    c = pipe.inpaint(images, m, [PROMPT] * 2, sampler=sampler, steps=3, generator=g(2))
    assert torch.isfinite(b).all() and torch.isfinite(c).all()
    torch.testing.assert_close(c[..., :16], pipe.check_images(images)[..., :16], rtol=0, atol=0)   # unmasked pixels kept exactly

# --- checks that 36 added after these tests found the gaps: edits validate every argument, NaN is refused

@pytest.mark.parametrize('kw', [dict(sampler='plms'), dict(guidance_scale=float('inf')), dict(steps=0)])
def test_img2img_strength0_still_checks(pipe, images, kw):
    with pytest.raises(ValueError): pipe.img2img(images, [PROMPT] * 2, 0., **kw)

def test_steps_checked_by_edits(pipe, images):
    for call in (lambda: pipe.img2img(images, [PROMPT] * 2, 0.5, steps=0), lambda: pipe.inpaint(images, torch.ones(32, 32), [PROMPT] * 2, steps=0)):
        with pytest.raises(ValueError, match='steps must be an integer >= 1'): call()

def test_mask_batch_mismatch(pipe, images):
    with pytest.raises(ValueError, match='mask'): pipe.inpaint(images, torch.ones(3, 1, 32, 32), [PROMPT] * 2, steps=2)

def test_non_finite_image_and_mask(pipe, images):
    x = pipe.check_images(images).clone(); x[0, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError): pipe.check_images(x)
    with pytest.raises(ValueError): pipe.inpaint(images, torch.full((32, 32), float('nan')), [PROMPT] * 2, steps=2)
