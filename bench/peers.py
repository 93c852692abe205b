"""miniai side by side with its peers, in one process on one machine: every figure is a ratio measured here.

1. Learner: one epoch (train + validation) of Fashion-MNIST through the miniai Learner (TrainCB, DeviceCB,
   MetricsCB(accuracy), ProgressCB), a plain PyTorch loop computing the same loss and accuracy, and fastai's
   Learner (its default callbacks, `metrics=accuracy`). Same model, data (miniai's TensorLoader batches), optimizer
   (torch.optim.SGD, momentum 0.9; fastai through OptimWrapper), seed. Reported: microseconds per batch added over
   the plain loop, for a tiny model (a linear layer: overhead shows) and the small CNN of bench/learner_overhead.py.
   Targets: miniai <= 1.05x the plain loop on the CNN, and less added time per batch than fastai.
2. Diffusion training: images/s of one training step of miniai's UNet2D and diffusers' UNet2DModel at matched
   size (both parameter counts printed), both trained the Hugging Face course's way: DDPMScheduler.add_noise,
   MSE on the noise. Also miniai's U-Net trained through `diffusion_learner` (the Learner's cost on top).
   Target: miniai >= 1.0x diffusers.
3. Sampling: wall time for 256 samples in 20 steps from one (untrained) eps-prediction U-Net, miniai's DPM++(2M)
   (`sample_dpmpp_2m` via `EpsDenoiser`) against diffusers' DPMSolverMultistepScheduler driving the same model.
   Sampler overhead = (wall time - time inside the model) / time inside the model. Target: < 5%.
4. Data: bench/data.py's loaders (miniai's TensorLoader, the HF-datasets way, the indexing limit), images/s.
`--memory` instead measures peak RSS (in fresh processes) of a training run and of sampling at the `miniai`
command's default sizes.

Runs interleave the contenders and report medians, so a change in machine load hits all alike. A peer that
is not installed is skipped with a line that says so. fastai and miniai's development tools cannot share one
environment (nbdev 2 pins fastcore < 1.13, fastai needs newer), so run it where fastai is installed:

    pip install "miniai-course[bench]"            # fastai, diffusers
    python bench/peers.py                          # ~10 min on one CPU thread
    python bench/peers.py --quick                  # a smoke run, ~1 min
    python bench/peers.py --memory                 # peak RSS of training and sampling
"""
from __future__ import annotations
import warnings
warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)   # torcheval, at import
import argparse, contextlib, io, os, resource, statistics, subprocess, sys, time
from functools import partial
from pathlib import Path
import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from miniai.core import set_seed
from miniai.datasets import DataLoaders
from miniai.learner import Learner, TrainCB, DeviceCB, MetricsCB, ProgressCB
from miniai.conv import conv
from miniai.unet import UNet2D, UNetConfig
from miniai.schedules import linear_betas, alphas_cumprod, noisify, get_sigmas_karras
from miniai.samplers import EpsDenoiser, sample_dpmpp_2m
from miniai.ddpm import diffusion_learner
from torcheval.metrics import MulticlassAccuracy

LR, MOM, CPU = 0.1, 0.9, torch.device('cpu')

def have(mod:str) -> bool:
    try: __import__(mod); return True
    except ImportError: return False

def med(v): return statistics.median(v)

def interleave(fns:dict, repeats:int) -> dict:
    "Call each of `fns` (name -> f returning seconds) `repeats` times, alternating the order; returns name -> [seconds]."
    res, names = {k: [] for k in fns}, list(fns)
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]): res[k].append(fns[k]())
    return res

# ------------------------------------------------------------------------------------------- 1. Learner
def tiny_model(): return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
def cnn_model():   # bench/learner_overhead.py's CNN
    return nn.Sequential(conv(1, 8), conv(8, 16), conv(16, 32), conv(32, 10, act=False), nn.AdaptiveAvgPool2d(1), nn.Flatten())

def plain_epoch(mk, dls):
    set_seed(0)
    model = mk()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOM)
    t = time.perf_counter()
    for train, dl in ((True, dls.train), (False, dls.valid)):
        model.train(train)
        if train: dl.sampler.set_epoch(0)
        tot, correct, n = 0., 0, 0
        with torch.set_grad_enabled(train):
            for xb, yb in dl:
                preds = model(xb)
                loss = F.cross_entropy(preds, yb)
                if train: loss.backward(); opt.step(); opt.zero_grad()
                tot += loss.item() * len(xb); correct += (preds.argmax(1) == yb).sum().item(); n += len(xb)
        print(f'plain {"train" if train else "valid"} loss {tot/n:.3f} accuracy {correct/n:.3f}')
    return time.perf_counter() - t, model

def miniai_epoch(mk, dls):
    set_seed(0)
    learn = Learner(mk(), dls, F.cross_entropy, lr=LR, opt_func=partial(torch.optim.SGD, momentum=MOM),
                    cbs=[TrainCB(), DeviceCB(CPU), MetricsCB(accuracy=MulticlassAccuracy()), ProgressCB()])
    t = time.perf_counter()
    learn.fit(1)
    return time.perf_counter() - t, learn.model

class _FastaiDLs:
    "miniai's loaders in the shape fastai's Learner reads: `.train`, `.valid`, `[i]`, `.device`."
    def __init__(self, dls): self.train, self.valid, self.device, self.path = dls.train, dls.valid, CPU, Path('.')
    def __getitem__(self, i): return (self.train, self.valid)[i]

def fastai_epoch(mk, dls):
    from fastai.learner import Learner as FLearner
    from fastai.optimizer import OptimWrapper
    from fastai.metrics import accuracy
    set_seed(0)
    dls.train.sampler.set_epoch(0)   # fastai does not call set_epoch; the others do, with epoch 0
    learn = FLearner(_FastaiDLs(dls), mk(), loss_func=F.cross_entropy, metrics=accuracy,
                     opt_func=partial(OptimWrapper, opt=partial(torch.optim.SGD, momentum=MOM)))
    t = time.perf_counter()
    learn.fit(1, LR)
    return time.perf_counter() - t, learn.model

def bench_learner(a) -> list:
    rows = []
    peers = {'plain': plain_epoch, 'miniai': miniai_epoch}
    if have('fastai'): peers['fastai'] = fastai_epoch
    else: print('fastai is not installed: skipping fastai\'s Learner (pip install fastai, in its own environment)')
    for name, mk, n_train in (('tiny (linear)', tiny_model, a.n_train_tiny), ('small CNN', cnn_model, a.n_train_cnn)):
        dls = DataLoaders.fashion(a.bs, n_train=n_train, n_valid=a.n_valid, seed=0)
        n_batches = len(dls.train) + len(dls.valid)
        weights = {}
        def timed(k):
            def f():
                with contextlib.redirect_stdout(io.StringIO()): s, m = peers[k](mk, dls)
                weights[k] = [p.detach().clone() for p in m.parameters()]
                return s
            return f
        for k in peers: timed(k)()                                 # warm-up
        res = interleave({k: timed(k) for k in peers}, a.repeats)
        same = all(torch.equal(x, y) for x, y in zip(weights['plain'], weights['miniai']))
        base = med(res['plain'])
        for k in peers:
            rows.append((f'Learner, {name}: {k}', f'{med(res[k]):.2f} s/epoch',
                         f'{(med(res[k]) - base) / n_batches * 1e6:+.0f} us/batch' if k != 'plain' else f'{n_batches} batches',
                         f'{med(res[k]) / base:.3f}x plain'))
        print(f'  {name}: {n_batches} batches of {a.bs}; miniai and plain end with the same weights: {same}', flush=True)
    return rows

# ------------------------------------------------------------------------------------------- 2. Diffusion training
def unets(size:str):
    "miniai's UNet2D and diffusers' UNet2DModel with the same channels, blocks per level and attention resolution."
    from diffusers import UNet2DModel
    nfs, n_layers = {'small': ((32, 64, 128), 1), 'course': ((32, 64, 128, 256), 2)}[size]
    ours = UNet2D(UNetConfig(nfs=nfs, n_layers=n_layers, attn_res=(8,), n_heads=4))
    attn_level = 2   # 32 -> 16 -> 8: the third level works at 8x8
    down = tuple('AttnDownBlock2D' if i == attn_level else 'DownBlock2D' for i in range(len(nfs)))
    up = tuple('AttnUpBlock2D' if i == attn_level else 'UpBlock2D' for i in reversed(range(len(nfs))))
    theirs = UNet2DModel(sample_size=32, in_channels=1, out_channels=1, block_out_channels=nfs, layers_per_block=n_layers,
                         down_block_types=down, up_block_types=up, norm_num_groups=8, attention_head_dim=nfs[attn_level] // 4)
    return ours, theirs

def n_params(m): return sum(p.numel() for p in m.parameters())

def bench_diffusion_training(a) -> list:
    if not have('diffusers'):
        print('diffusers is not installed: skipping the U-Net training comparison (pip install diffusers)'); return []
    from diffusers import DDPMScheduler
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear')
    set_seed(0)
    ours, theirs = unets(a.unet)
    dls = DataLoaders.fashion(a.train_bs, n_train=a.train_bs * (a.train_steps + 2), n_valid=a.train_bs, seed=0,
                              mean=0.5, std=0.5, pad=2)
    batches = [b[0] for b in dls.train][:a.train_steps + 2]
    def hf_course_steps(model, call):
        opt = torch.optim.AdamW(model.parameters(), 1e-4)
        g = torch.Generator().manual_seed(0)
        def f():
            t0 = None
            for i, x in enumerate(batches):
                if i == 2: t0 = time.perf_counter()                      # two warm-up steps
                noise = torch.randn(x.shape, generator=g)
                ts = torch.randint(0, 1000, (len(x),), generator=g)
                noisy = sched.add_noise(x, noise, ts)
                loss = F.mse_loss(call(model, noisy, ts), noise)
                loss.backward(); opt.step(); opt.zero_grad()
            return (time.perf_counter() - t0) / (len(batches) - 2)
        return f
    def learner_steps():
        learn = diffusion_learner(ours, DataLoaders(dls.train, dls.valid), partial(noisify, alphas_cumprod=alphas_cumprod(linear_betas(1000))),
                                  lr=1e-4, device=CPU)
        def f():
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()): learn.fit(1, valid=False)
            return (time.perf_counter() - t) / len(dls.train)
        return f
    res = interleave({'miniai UNet2D': hf_course_steps(ours, lambda m, x, t: m(x, t)),
                      'diffusers UNet2DModel': hf_course_steps(theirs, lambda m, x, t: m(x, t).sample),
                      'miniai UNet2D, diffusion_learner': learner_steps()}, a.repeats)
    ips = {k: a.train_bs / med(v) for k, v in res.items()}
    base = ips['diffusers UNet2DModel']
    counts = {'miniai UNet2D': n_params(ours), 'diffusers UNet2DModel': n_params(theirs),
              'miniai UNet2D, diffusion_learner': n_params(ours)}
    return [(f'Diffusion training ({a.unet}, bs {a.train_bs}): {k}', f'{v:.1f} images/s', f'{counts[k]/1e6:.2f}M params',
             f'{v / base:.2f}x diffusers') for k, v in ips.items()]

# ------------------------------------------------------------------------------------------- 3. Sampling
class TimedModel(nn.Module):
    "Wraps a model and adds up the seconds spent inside its forward calls."
    def __init__(self, m): super().__init__(); self.m, self.secs = m, 0.
    def forward(self, *args):
        t = time.perf_counter()
        try: return self.m(*args)
        finally: self.secs += time.perf_counter() - t

def bench_sampling(a) -> list:
    set_seed(0)
    net = UNet2D(UNetConfig(**dict(nfs=(16, 32, 64), n_layers=1, attn_res=(8,), n_heads=2))).eval()
    ab = alphas_cumprod(linear_betas(1000))
    x_T = torch.randn(a.n_samples, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    def ours():
        tm = TimedModel(net)
        den = EpsDenoiser(tm, ab)
        sig = get_sigmas_karras(a.steps, den.sigma_min, den.sigma_max)
        t = time.perf_counter()
        sample_dpmpp_2m(den, x_T * sig[0], sig)
        return time.perf_counter() - t, tm.secs
    def theirs():
        from diffusers import DPMSolverMultistepScheduler
        s = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule='linear', algorithm_type='dpmsolver++',
                                        solver_order=2, use_karras_sigmas=True)
        tm = TimedModel(net)
        t = time.perf_counter()
        s.set_timesteps(a.steps)
        x = x_T * s.init_noise_sigma
        with torch.no_grad():
            for ts in s.timesteps:
                eps = tm(s.scale_model_input(x, ts), ts.float().expand(len(x)))
                x = s.step(eps, ts, x).prev_sample
        return time.perf_counter() - t, tm.secs
    fns = {'miniai dpmpp_2m': ours}
    if have('diffusers'): fns['diffusers DPMSolverMultistep'] = theirs
    else: print('diffusers is not installed: skipping its DPM-Solver++ scheduler')
    res = {k: [] for k in fns}
    for r in range(a.sample_repeats):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]): res[k].append(fns[k]())
    rows = []
    for k, v in res.items():
        wall, model = med([o[0] for o in v]), med([o[1] for o in v])
        rows.append((f'Sampling {a.n_samples} images, {a.steps} steps: {k}', f'{wall:.1f} s', f'model {model:.1f} s',
                     f'sampler overhead {(wall - model) / model:.2%}'))
    return rows

# ------------------------------------------------------------------------------------------- 4. Data
def bench_data(a) -> list:
    import data as bench_data_mod
    med_ = bench_data_mod.measure(bs=256, repeats=a.data_repeats, hf_items=a.hf_items)
    return [(f'Data, one epoch of bs 256: {k}', f'{v:,.0f} images/s', '', f'{v / med_["hf"]:.1f}x hf')
            for k, v in med_.items()]

# ------------------------------------------------------------------------------------------- memory
RSS_CHILD = r'''
import resource, sys, time, torch
from miniai.core import by_mode
from miniai.cli import run_defaults, make_learner, build_model, denoiser_for, sampling_sigmas
from miniai.learner import Callback, CancelFitException
from miniai.ddpm import generate
import tempfile
from pathlib import Path
torch.set_num_threads(1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
job, n = sys.argv[1], int(sys.argv[2])
run = run_defaults('ddpm')
if job == 'train':
    class Stop(Callback):
        def after_batch(self, learn):
            if learn.iter + 1 >= n: raise CancelFitException()
    learn = make_learner(run, Path(tempfile.mkdtemp()), progress=False)
    learn.fit(1, cbs=[Stop()])
    what = f"training ddpm, U-Net {run['size']}, bs {run['bs']}, {n} batches"
else:
    model = build_model(run).eval()
    den = denoiser_for(model, run)
    generate(den, 'dpmpp_2m', n, sampling_sigmas(den, 'dpmpp_2m', 20))
    what = f"sampling {n} images, U-Net {run['size']}, dpmpp_2m 20 steps"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{what}: peak RSS {peak/1024:.0f} MiB (after imports {base/1024:.0f} MiB)")
'''

def memory(a):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for job, n in (('train', a.rss_batches), ('sample', 64)):
        p = subprocess.run([sys.executable, '-c', RSS_CHILD, job, str(n)], capture_output=True, text=True, env=env)
        print(p.stdout.strip() or p.stderr[-2000:], flush=True)

# ------------------------------------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='a smoke run: small sizes, one repeat (meaningless numbers)')
    p.add_argument('--memory', action='store_true', help='measure peak RSS of training and sampling instead')
    p.add_argument('--only', default='learner,train,sample,data', help='comma-separated sections to run')
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    sizes = dict(bs=256, n_train_tiny=None, n_train_cnn=12800, n_valid=2560, repeats=3, unet='small', train_bs=32,
                 train_steps=10, n_samples=256, steps=20, sample_repeats=2, data_repeats=3, hf_items=10000, rss_batches=3)
    if a.quick: sizes.update(n_train_tiny=2560, n_train_cnn=1024, n_valid=512, repeats=1, train_steps=2, n_samples=16,
                             steps=5, sample_repeats=1, data_repeats=1, hf_items=1024, rss_batches=3)
    for k, v in sizes.items(): setattr(a, k, v)
    print(f'torch {torch.__version__}, {a.threads} thread(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}'
          + (', --quick' if a.quick else ''), flush=True)
    if a.memory: return memory(a)
    t0, rows = time.perf_counter(), []
    sections = {'learner': bench_learner, 'train': bench_diffusion_training, 'sample': bench_sampling, 'data': bench_data}
    for s in a.only.split(','):
        t = time.perf_counter()
        new = sections[s](a)
        for r in new: print('  ' + ' | '.join(r), flush=True)   # as they come, in case a long run is cut short
        rows += new
        print(f'[{s}: {time.perf_counter()-t:.0f}s]', flush=True)
    print('\n| what | time or speed | detail | ratio |\n|---|---|---|---|')
    for r in rows: print('| ' + ' | '.join(r) + ' |')
    print(f'\n{time.perf_counter()-t0:.0f}s in all')

if __name__ == '__main__': main()
