"Bad input and the optional-dependency path of miniai.interop (diffusers is a dev-only extra)."
import sys
import pytest
import torch
from miniai.interop import import_diffusers, DiffusersEps, tiny_unet2d, ddim_scheduler, diffusers_sample
from miniai.schedules import linear_betas, alphas_cumprod
from miniai.samplers import EpsDenoiser, sample_ddim


def test_missing_diffusers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'diffusers', None)
    with pytest.raises(ImportError, match='pip install diffusers'): import_diffusers()
    with pytest.raises(ImportError, match='optional'): tiny_unet2d()


def test_module_imports_without_diffusers(monkeypatch):
    import importlib, miniai.interop
    monkeypatch.setitem(sys.modules, 'diffusers', None)    # `import diffusers` now raises ImportError
    mod = importlib.reload(miniai.interop)                  # the module itself must not need it
    with pytest.raises(ImportError, match='pip install diffusers'): mod.ddim_scheduler(torch.rand(10) * 0.01 + 1e-4, 5)


def test_bad_inputs():
    pytest.importorskip('diffusers')
    net = DiffusersEps(tiny_unet2d())
    with pytest.raises(ValueError, match=r'\(B, 1, H, W\)'): net(torch.randn(2, 3, 32, 32), 5)
    with pytest.raises(ValueError, match=r'\(B, 1, H, W\)'): net(torch.randn(1, 32, 32), 5)
    with pytest.raises(ValueError, match='between 1 and 1000'): ddim_scheduler(linear_betas(1000), 0)
    with pytest.raises(ValueError, match='between 1 and 1000'): ddim_scheduler(linear_betas(1000), 1001)


@pytest.mark.parametrize('spacing,n', [('trailing', 10), ('leading', 20)])
def test_ddim_agrees_with_diffusers_untrained(spacing, n):
    pytest.importorskip('diffusers')
    torch.manual_seed(0)
    net = DiffusersEps(tiny_unet2d()).eval()
    betas = linear_betas(1000)
    sched = ddim_scheduler(betas, n, spacing=spacing)
    den = EpsDenoiser(net, alphas_cumprod(betas), quantize=True)
    sigmas = den.get_sigmas(n, spacing=spacing).float()
    x_T = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    ref = diffusers_sample(net, sched, x_T, eta=0.)
    ours = sample_ddim(den, x_T * (1 + sigmas[0] ** 2).sqrt(), sigmas)
    assert ((ours - ref).norm() / ref.norm()).item() <= 1e-4
