"""miniai.cond: CFGDenoiser with every sampler, bad input, and a conditional training step."""
import math
from functools import partial
import pytest
import torch
import torch.nn.functional as F
from miniai.core import set_seed
from miniai.datasets import DataLoaders, TensorLoader
from miniai.schedules import noisify_edm, get_sigmas_karras
from miniai.samplers import EDMDenoiser, SAMPLERS
from miniai.unet import UNet2D, UNetConfig
from miniai.ddpm import generate
from miniai.cond import label_dropout, CondNoisifyCB, cond_learner, CondDenoiser, CFGDenoiser

CFG = UNetConfig(nfs=(8, 16), n_layers=1, attn_res=(), n_heads=2, n_classes=4)


@pytest.fixture(scope='module')
def den():
    set_seed(0)
    net = UNet2D(CFG).eval()
    with torch.no_grad(): net.class_emb.weight.mul_(5)     # make the classes matter in an untrained net
    return CondDenoiser(net, partial(EDMDenoiser, sigma_data=0.5))


@pytest.mark.parametrize('name', list(SAMPLERS))
@pytest.mark.parametrize('w', [0., 1., 3.])
def test_every_sampler_matches_two_passes(den, name, w):
    c = torch.tensor([0, 1, 3])
    def by_hand(x, sigma):
        d_c, d_u = den(x, sigma, c), den(x, sigma, torch.full_like(c, 4))
        return d_u + w * (d_c - d_u)
    sig = get_sigmas_karras(3, 0.02, 20.)
    a = generate(CFGDenoiser(den, c, w), name, 3, sig, shape=(1, 8, 8), generator=torch.Generator().manual_seed(0), device='cpu')
    b = generate(by_hand, name, 3, sig, shape=(1, 8, 8), generator=torch.Generator().manual_seed(0), device='cpu')
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_guidance_changes_samples(den):
    sig = get_sigmas_karras(3, 0.02, 20.)
    s = [generate(CFGDenoiser(den, 2, w), 'euler', 2, sig, shape=(1, 8, 8), generator=torch.Generator().manual_seed(0), device='cpu')
         for w in (1., 4.)]
    assert (s[0] - s[1]).abs().mean() > 1e-3


def test_one_batched_call(den):
    sizes = []
    class Spy:
        null_class = 4
        def __call__(self, x, sigma, c): sizes.append((len(x), len(sigma), c.tolist())); return den(x, sigma, c)
    CFGDenoiser(Spy(), torch.tensor([1, 2]), 2.)(torch.randn(2, 1, 8, 8), torch.tensor([1., 1.]))
    assert sizes == [(4, 4, [1, 2, 4, 4])]


@pytest.mark.parametrize('w', [float('nan'), float('inf'), -float('inf'), None, '2', True, torch.tensor(2.)])
def test_bad_scale(den, w):
    with pytest.raises(ValueError, match='guidance scale must be a finite number'): CFGDenoiser(den, 0, w)


@pytest.mark.parametrize('c', [4, -1, torch.tensor([0, 7]), torch.tensor([0.5]), torch.tensor([True])])
def test_bad_class(den, c):
    with pytest.raises(ValueError, match='out of range|must be integers'): CFGDenoiser(den, c, 2.)


def test_no_null_class():
    with pytest.raises(ValueError, match='needs the null class'): CFGDenoiser(lambda x, s, c: x, 0, 2.)


def test_label_dropout():
    c = torch.arange(4).repeat(5000)
    d = label_dropout(c, 0.1, 4, torch.Generator().manual_seed(0))
    assert abs((d == 4).float().mean().item() - 0.1) < 0.01
    assert torch.equal(d[d != 4], c[d != 4])
    with pytest.raises(ValueError, match=r'probability in \[0, 1\]'): label_dropout(c, -0.1, 4)


def test_cond_learner_trains():
    set_seed(0)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (64,), generator=g)
    x = (y[:, None, None, None].float() / 2 - 1).expand(-1, 1, 8, 8).clone()     # class k: a flat image of value k/2-1
    dls = DataLoaders(TensorLoader(x, y, batch_size=16, shuffle=True, seed=0, mean=None),
                      TensorLoader(x[:16], y[:16], batch_size=16, mean=None))
    model = UNet2D(CFG)
    learn = cond_learner(model, dls, partial(noisify_edm, sigma_data=0.5), lr=3e-3, device='cpu')
    learn.cbs[3]._log = lambda d: None
    seen = []
    class Spy:
        order = 100
        def before_batch(self, learn): seen.append(learn.batch)
    learn.fit(2, cbs=[Spy()])
    xt, t, c, target = seen[0]
    assert xt.shape == target.shape == (16, 1, 8, 8) and t.shape == c.shape == (16,)
    assert learn.history[-1]['loss'] < learn.history[0]['loss']


def test_cond_learner_needs_conditional_model():
    with pytest.raises(ValueError, match='class-conditional model'):
        cond_learner(UNet2D(CFG, n_classes=None), None, noisify_edm)


def test_batches_without_labels():
    cb = CondNoisifyCB(noisify_edm, 4)
    class L: batch, training, epoch = (torch.zeros(2, 1, 8, 8),), True, 0
    cb.before_epoch(L)
    with pytest.raises(ValueError, match='needs \\(images, labels\\) batches'): cb.before_batch(L)
