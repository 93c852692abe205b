"DDIM inversion: the closed-form Gaussian oracle, exact round trips of a linear denoiser, and bad input on a tiny untrained pipeline."
import math, pytest, torch
from miniai.inversion import invert_ddim, ddim_invert, ddim_edit
from miniai.samplers import sample_ddim
from miniai.schedules import get_sigmas_karras
from miniai.vae import VAE, VAEConfig
from miniai.text import Tokenizer, TextEncoder, TextConfig
from miniai.latent import TextConditioner, LDMConfig, ldm_unet
from miniai.pipeline import StableDiffusion

S_D = 0.5
def gauss(x, sigma): return x * S_D**2 / (S_D**2 + sigma.view(-1, *[1] * (x.ndim - 1))**2)

def test_gaussian_ode_exact_solution():
    "For N(0, s_d^2) data the ODE has x(sigma) proportional to sqrt(s_d^2 + sigma^2): inversion converges to it, first order."
    x0 = torch.randn(128, 4, generator=torch.Generator().manual_seed(0)) * S_D
    exact = x0 * math.sqrt((S_D**2 + 80.**2) / (S_D**2 + 0.002**2))
    errs = []
    for n in (10, 20, 40, 80):
        xT = invert_ddim(gauss, x0, get_sigmas_karras(n, 0.002, 80.))
        errs.append(((xT - exact)**2).mean().sqrt() / exact.pow(2).mean().sqrt())
    assert all(a > b for a, b in zip(errs, errs[1:]))
    for a, b in zip(errs, errs[1:]): assert 1.5 < a / b < 2.6     # halving the step halves the error: first order
    assert errs[-1] < 0.05

def test_round_trip_and_callback():
    sig = get_sigmas_karras(50, 0.002, 80.)
    x0 = torch.randn(8, 3, generator=torch.Generator().manual_seed(1)) * S_D
    seen = []
    xT = invert_ddim(gauss, x0, sig, callback=lambda d: seen.append(float(d['sigma'])))
    assert seen == sorted(seen) and len(seen) == 49 and math.isclose(seen[0], 0.002, rel_tol=1e-4)
    assert (sample_ddim(gauss, xT, sig) - x0).pow(2).mean() < 0.01

def test_identity_denoiser_is_exact():
    "A denoiser that returns 0 (data = a point at 0) makes x proportional to sigma: both directions are exact."
    zero = lambda x, s: torch.zeros_like(x)
    sig = get_sigmas_karras(7, 0.002, 80.)
    x0 = torch.randn(4, 2)
    xT = invert_ddim(zero, x0, sig)
    torch.testing.assert_close(xT, x0 * 80. / 0.002, rtol=1e-4, atol=0)

def test_bad_sigmas():
    with pytest.raises(ValueError, match='strictly decreasing|ends in 0|end'):
        invert_ddim(gauss, torch.zeros(2, 2), torch.tensor([0.1, 1., 0.]))

@pytest.fixture(scope='module')
def pipe():
    torch.manual_seed(0)
    tok = Tokenizer.build(['a large red circle', 'a small blue square'])
    enc = TextEncoder(TextConfig(vocab_size=len(tok), context_len=tok.context_len, d=16, n_heads=2, n_layers=1))
    vae = VAE(VAEConfig(in_ch=3, nfs=(8, 16), norm_groups=2))
    return StableDiffusion(vae, TextConditioner(enc, tok), ldm_unet(vae.cfg.latent_shape, 16, nfs=(16,), n_layers=1, n_heads=2), LDMConfig())

def test_shapes_and_pipe_agrees(pipe):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    noise, traj = ddim_invert(pipe, x, 'a large red circle', steps=3, trajectory=True)
    assert noise.shape == (2, *pipe.latent_shape) and traj.shape == (3, 2, *pipe.latent_shape)
    torch.testing.assert_close(traj[0], pipe.encode(x))
    a = ddim_edit(pipe, x, ['a large red circle'] * 2, ['a small blue square'] * 2, steps=3, output='latents')
    b = pipe(['a small blue square'] * 2, latents=noise, steps=3, sampler='ddim', guidance_scale=1., output='latents')
    torch.testing.assert_close(a, b)

@pytest.mark.parametrize('kw, msg', [
    (dict(steps=0), 'steps must be'), (dict(steps=1), 'steps must be'), (dict(steps=2.5), 'steps must be'),
    (dict(guidance_scale=float('inf')), 'finite'),
    (dict(images=torch.zeros(2, 3, 28, 28)), 'images must be'), (dict(images=torch.full((2, 3, 32, 32), 2.)), '[-1, 1]'),
    (dict(prompts=['a', 'b', 'c']), 'prompts'), (dict(prompts=[]), 'prompt list is empty')])
def test_bad_input(pipe, kw, msg):
    args = dict(images=torch.zeros(2, 3, 32, 32), prompts=['a', 'b'], steps=3) | kw
    with pytest.raises(ValueError, match=None) as e: ddim_invert(pipe, **args)
    assert msg in str(e.value)
