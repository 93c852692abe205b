"""miniai's schedules and samplers against diffusers' schedulers, an independent implementation.

Every test runs the same fixed, mildly nonlinear eps-model through a diffusers scheduler and through the
matching miniai sampler (wrapped in `EpsDenoiser`) from the same starting noise and, for the stochastic
samplers, the same `torch.Generator` seed, and requires the final samples to agree to a relative error of
1e-4 (||a - b|| / ||b||). Everything runs in float64 except where diffusers itself casts to float32.

Conventions of diffusers that the tests follow (read from its source, diffusers 0.42):
- DDPM/DDIM default to `clip_sample=True` (clamping the predicted x0 to [-1, 1]); miniai never clips, so
  the schedulers get `clip_sample=False`.
- DDPM/DDIM/DPM-Solver work on x_t (the variance-preserving scale) and start from x_T; the k-style
  schedulers (Euler, Euler ancestral, Heun, LMS) work on x = x_t / sqrt(ab) like miniai, and feed the
  model `scale_model_input(x) = x / sqrt(1 + sigma^2)`. We start both from the same image, each on its scale.
  At sigma = 0 the two scales coincide, so final samples compare directly.
- DDIM steps from t to t - T//n whatever the next listed timestep is. With 'trailing' spacing and n not
  dividing T those differ and diffusers' chain is inconsistent, so DDIM step counts here divide 1000.
- diffusers draws the stochastic samplers' noise with `torch.randn(shape, generator=g, dtype=model_output.dtype)`
  once per step after the model call; miniai's `noise_like` draws the same way, so one seed gives both the
  same noise. (diffusers also draws on the last step, where the noise is multiplied by 0; miniai skips that
  draw, which changes nothing since no draw follows it.)
- Heun's and DPM-Solver++'s last step (to sigma = 0) is first order in both: diffusers' DPM-Solver++ forces
  it with `final_sigmas_type='zero'`, and `lower_order_final=True` is its default.
- DPM-Solver's 'leading' spacing is its own (T // (n + 1)); for it we hand miniai the scheduler's timesteps.
"""
import pytest
import torch

pytest.importorskip('diffusers')
from diffusers import (DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
                       HeunDiscreteScheduler, LMSDiscreteScheduler, DPMSolverMultistepScheduler)

from miniai.schedules import linear_betas, cosine_betas, alphas_cumprod, get_sigmas_karras, linear_sched
from miniai.samplers import (EpsDenoiser, spaced_timesteps, append_dims, sample_ddpm, sample_ddim, sample_euler,
                             sample_euler_ancestral, sample_heun, sample_lms, sample_dpmpp_2m)

# diffusers 0.42 + numpy 2 warn about `__array__(copy=...)` inside diffusers itself; not ours to fix
pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')

TOL = 1e-4
SCHEDULES = {'linear': (linear_betas, 'linear'), 'cosine': (cosine_betas, 'squaredcos_cap_v2')}
SHAPE = (2, 3, 8, 8)


def fake_eps(x_t, t):
    "A fixed eps-model: mildly nonlinear in x_t and smooth in t (a number, 0-dim or (B,) tensor)."
    t = torch.as_tensor(t).to(x_t.dtype)
    tt = append_dims(t, x_t.ndim) / 1000 if t.ndim else t / 1000
    return 0.1 * x_t + 0.3 * torch.tanh(x_t) * tt - 0.05 * tt


def rel_err(a, b): return ((a - b).norm() / b.norm()).item()


def make(cls, schedule, **kw):
    "A diffusers scheduler on miniai's schedule (HeunDiscreteScheduler's default betas differ, so always pass them)."
    return cls(num_train_timesteps=1000, beta_schedule=SCHEDULES[schedule][1], beta_start=1e-4, beta_end=0.02, **kw)


def run_diffusers(sched, x, generator=None, **step_kw):
    "The standard diffusers denoising loop."
    for t in sched.timesteps:
        eps = fake_eps(sched.scale_model_input(x, t), t)
        if generator is not None: step_kw['generator'] = generator
        x = sched.step(eps, t, x, **step_kw).prev_sample
    return x


def start(seed=0):
    return torch.randn(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def gen(seed=1): return torch.Generator().manual_seed(seed)


def miniai_denoiser(schedule, **kw):
    return EpsDenoiser(fake_eps, alphas_cumprod(SCHEDULES[schedule][0]()), **kw)


# --- schedules -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('schedule', ['linear', 'cosine'])
def test_betas_match_diffusers(schedule):
    ours = SCHEDULES[schedule][0]()
    theirs = make(DDPMScheduler, schedule)
    assert torch.allclose(ours, theirs.betas.double(), rtol=1e-6, atol=1e-9)
    assert torch.allclose(alphas_cumprod(ours), theirs.alphas_cumprod.double(), rtol=1e-5, atol=1e-9)


def test_course_linear_sched_matches_diffusers():
    "The course's `linear_sched(betamax=0.01)` (its DDPM v3 schedule) is DDPMScheduler(beta_end=0.01)'s, float32 like it."
    s, d = linear_sched(betamax=0.01), DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.01)
    assert s.abar.dtype == d.alphas_cumprod.dtype == torch.float32
    assert torch.allclose(s.abar, d.alphas_cumprod, rtol=1e-5, atol=1e-7)
    assert torch.allclose(s.a, d.alphas, rtol=1e-6, atol=1e-7)
    assert torch.allclose(s.sig ** 2, d.betas, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize('spacing', ['leading', 'trailing', 'linspace'])
@pytest.mark.parametrize('n', [1, 7, 10, 25, 50, 333, 1000])
def test_spacing_matches_diffusers(spacing, n):
    for cls in (DDPMScheduler, DDIMScheduler):
        s = cls(timestep_spacing=spacing)
        s.set_timesteps(n)
        assert torch.equal(spaced_timesteps(n, spacing=spacing), s.timesteps), (cls.__name__, spacing, n)
    if spacing != 'linspace':   # the k-style schedulers use fractional timesteps for 'linspace'
        s = EulerDiscreteScheduler(timestep_spacing=spacing)
        s.set_timesteps(n)
        assert torch.equal(spaced_timesteps(n, spacing=spacing).float(), s.timesteps)


# --- DDPM and DDIM (x_t scale in diffusers) --------------------------------------------------------------

CASES = [(sch, sp, n) for sch in ('linear', 'cosine') for sp in ('leading', 'trailing') for n in (10, 50)]


def ddx_run(cls, schedule, spacing, n, miniai_sampler, eta=None, stochastic=False, seed=1):
    sched = make(cls, schedule, clip_sample=False, timestep_spacing=spacing)
    sched.set_timesteps(n)
    den = miniai_denoiser(schedule)
    assert torch.equal(spaced_timesteps(n, spacing=spacing), sched.timesteps)
    sigmas = den.get_sigmas(n, spacing=spacing)
    x_T = start()                                             # x_t at the first timestep
    kw = {} if eta is None else {'eta': eta}
    ref = run_diffusers(sched, x_T, generator=gen() if stochastic else None, **kw)
    ours = miniai_sampler(den, x_T * (1 + sigmas[0] ** 2).sqrt(), sigmas, generator=gen(seed) if stochastic else None, **kw)
    return rel_err(ours, ref)


@pytest.mark.parametrize('schedule,spacing,n', CASES + [('linear', 'leading', 1000)])
def test_ddpm(schedule, spacing, n):
    assert ddx_run(DDPMScheduler, schedule, spacing, n, sample_ddpm, stochastic=True) <= TOL


@pytest.mark.parametrize('schedule,spacing,n', CASES)
@pytest.mark.parametrize('eta', [0., 0.5, 1.])
def test_ddim(schedule, spacing, n, eta):
    assert ddx_run(DDIMScheduler, schedule, spacing, n, sample_ddim, eta=eta, stochastic=eta > 0) <= TOL


# --- k-diffusion style schedulers (sigma scale in diffusers too) -------------------------------------------

def k_run(cls, schedule, spacing, n, miniai_sampler, stochastic=False, den_kw=None, **sched_kw):
    sched = make(cls, schedule, timestep_spacing=spacing, **sched_kw)
    sched.set_timesteps(n)
    den = miniai_denoiser(schedule, **(den_kw or {}))
    sigmas = sched.sigmas.double()
    if cls is HeunDiscreteScheduler: sigmas = torch.cat([sigmas[:1], sigmas[1:-1:2], sigmas[-1:]])   # diffusers repeats each
    if not sched_kw.get('use_karras_sigmas'):
        # on the trained steps the sigmas are the table's, so miniai uses its own (float64) table. diffusers'
        # is float32: 1 - ab at t=0 is 1e-4, where float32 keeps 3-4 digits, hence this check's rtol
        ts = spaced_timesteps(n, spacing=spacing)
        assert torch.allclose(sigmas, den.get_sigmas(timesteps=ts), rtol=1e-3)
        sigmas = den.get_sigmas(timesteps=ts)
    x = start() * sigmas[0]
    ref = run_diffusers(sched, x.clone(), generator=gen() if stochastic else None)
    ours = miniai_sampler(den, x, sigmas, generator=gen() if stochastic else None)
    return rel_err(ours, ref)


@pytest.mark.parametrize('schedule,spacing,n', CASES)
def test_euler(schedule, spacing, n):
    assert k_run(EulerDiscreteScheduler, schedule, spacing, n, sample_euler) <= TOL


@pytest.mark.parametrize('schedule,spacing,n', CASES)
def test_euler_ancestral(schedule, spacing, n):
    assert k_run(EulerAncestralDiscreteScheduler, schedule, spacing, n, sample_euler_ancestral, stochastic=True) <= TOL


@pytest.mark.parametrize('schedule,spacing,n', CASES)
def test_heun(schedule, spacing, n):
    assert k_run(HeunDiscreteScheduler, schedule, spacing, n, sample_heun) <= TOL


@pytest.mark.parametrize('schedule,spacing,n', CASES)
def test_lms(schedule, spacing, n):
    assert k_run(LMSDiscreteScheduler, schedule, spacing, n, sample_lms) <= TOL


@pytest.mark.parametrize('cls,sampler', [(EulerDiscreteScheduler, sample_euler), (HeunDiscreteScheduler, sample_heun),
                                         (LMSDiscreteScheduler, sample_lms)])
@pytest.mark.parametrize('n', [10, 25])
def test_karras_sigmas(cls, sampler, n):
    "Karras noise levels between trained steps: diffusers and miniai both find t by interpolating log(sigma)."
    assert k_run(cls, 'linear', 'trailing', n, sampler, use_karras_sigmas=True) <= TOL
    # diffusers' Karras levels are miniai's `get_sigmas_karras` between the first and last spaced sigma
    sched = make(cls, 'linear', timestep_spacing='trailing', use_karras_sigmas=True)
    sched.set_timesteps(n)
    den = miniai_denoiser('linear')
    sig = den.get_sigmas(n, spacing='trailing')
    theirs = sched.sigmas if cls is not HeunDiscreteScheduler else torch.cat([sched.sigmas[:1], sched.sigmas[1:-1:2], sched.sigmas[-1:]])
    assert torch.allclose(get_sigmas_karras(n, sig[-2].item(), sig[0].item(), dtype=torch.float64), theirs.double(), rtol=1e-5)


# --- DPM-Solver++(2M) (x_t scale in diffusers) ----------------------------------------------------------

@pytest.mark.parametrize('schedule,spacing,n', CASES)
def test_dpmpp_2m(schedule, spacing, n):
    sched = make(DPMSolverMultistepScheduler, schedule, algorithm_type='dpmsolver++', solver_order=2,
                 solver_type='midpoint', lower_order_final=True, final_sigmas_type='zero', timestep_spacing=spacing)
    sched.set_timesteps(n)
    den = miniai_denoiser(schedule)
    if spacing == 'trailing': assert torch.equal(spaced_timesteps(n, spacing=spacing), sched.timesteps)
    sigmas = den.get_sigmas(timesteps=sched.timesteps)      # DPM-Solver's own 'leading' differs: use its steps
    x_T = start()
    ref = run_diffusers(sched, x_T)
    ours = sample_dpmpp_2m(den, x_T * (1 + sigmas[0] ** 2).sqrt(), sigmas)
    assert rel_err(ours, ref) <= TOL


def test_rel_err_is_meaningful():
    "The comparison can fail: another sampler, or other noise draws, land far outside the tolerance."
    assert k_run(EulerDiscreteScheduler, 'linear', 'trailing', 10, sample_heun) > 100 * TOL
    assert ddx_run(DDIMScheduler, 'linear', 'trailing', 10, sample_ddpm, stochastic=True) > 100 * TOL
    assert ddx_run(DDPMScheduler, 'linear', 'trailing', 10, sample_ddpm, stochastic=True, seed=2) > 100 * TOL
