"""FID and KID of every miniai sampler at a fixed budget of model evaluations, for one DDPM trained on Fashion-MNIST.

What it does, in order:
1. The FID evaluator: `fid_classifier()` (miniai.fid) gives the feature network, loaded from the cache or trained
   and cached; the reference set is `--n_samples` real *test* images. The real-data floor is the FID/KID of
   `--n_samples` real *training* images against that reference: the best any generator can score at this size.
2. The model: an eps-prediction `UNet2D` trained as in nbs/19_ddpm (linear betas, T=1000, AdamW, one-cycle lr,
   `diffusion_learner`), or loaded with `--model PATH`. After training it is saved atomically with `save_unet`,
   to `--model` or to `cache_dir('models')`; a later run with the same settings loads it (`--retrain` to redo).
   The save goes through `build_once` (miniai.core): two runs started together train one model, not two.
   `--max_minutes` bounds training: the one-cycle schedule then advances with whichever budget runs out first,
   the batches or the minutes, and the fit stops cleanly (CancelFitException) when time is up, and still saves.
3. For each sampler and each budget N in `--nfes`, the number of steps that costs N model evaluations (NFE):
   N steps for ddim, euler, euler_ancestral, lms and dpmpp_2m; (N+1)//2 steps for heun, which evaluates the model
   twice per step except on the last (to sigma=0), so N-1 evaluations for even N. The evaluations are counted, and
   the table shows the count where it differs from N. k-diffusion samplers walk Karras sigmas (rho=7) between the
   model's smallest and largest discrete sigma; ddim (eta=0) and ddpm walk the model's own discrete steps
   (`EpsDenoiser.get_sigmas`, trailing spacing). Plus DDPM ancestral sampling through all 1000 steps (`--ddpm1000`).
   Every run starts from the same noise (one seed), so the samplers are compared on the same starting points.
   `--oracle N` replaces the U-Net by the exact denoiser of N training images (a softmax over distances): the
   ideal model of that finite set, whose samples are copies of those images, so it should score near the floor.
4. A markdown table (sampler x NFE -> FID / KID), the floor, and the best sampler at <= 20 NFE with FID/floor
   (target: within 1.5x); `--out PATH` writes all of it as JSON.
EMA: training keeps an exponential moving average of the weights (miniai.ema's `EMACB`, decay `--ema_decay` with
k-diffusion's warmup), saved next to the model as `<model>_ema.safetensors`. Both the trained weights and the EMA
weights of that one run are scored, from the same noise, at every sampler and NFE: two tables, and both ratios
to the floor. `--ema_decay 0` turns it off.

Usage (from the repository root):

    python bench/fid_table.py                      # full size, for a GPU: course U-Net, 25 epochs of bs 512,
                                                   # 2048 samples, NFE 10,20,50,100 and DDPM-1000
    python bench/fid_table.py --quick --threads 1  # a ~2 minute smoke test on a CPU (meaningless numbers)
    python bench/fid_table.py --cpu_budget --threads 1 --out /tmp/fid_cpu.json
                                                   # a bounded real CPU run: 12 min of training, ~20 min in all
    python bench/fid_table.py --cpu_budget --threads 1 --oracle 10000
                                                   # no U-Net: the exact denoiser of 10000 training images, a
                                                   # check of the samplers and the FID pipeline (~1.5 min)
    python bench/fid_table.py --model ~/.cache/miniai/models/ddpm_fashion_unet.safetensors
                                                   # evaluate the model nbs/19_ddpm saves at full size

Presets only change defaults; any option given explicitly wins. On a CPU, small training batches (32) learn more
per minute than large ones; `--cpu_budget` uses them. `--quick` and `--cpu_budget` score with the small
feature network that `fid_classifier()` trains in quick mode (`--fid_net small`, 64-d features, seconds to train):
the course one (`--fid_net full`, 256-d) takes about half an hour to train on one CPU core, and FID numbers from
the two feature networks are not comparable with each other (nor with published Inception FIDs). Compare a
sampler with the floor measured in the same run.
"""
from __future__ import annotations
import argparse, json, math, os, time
from functools import partial
from pathlib import Path
import torch
from torch.optim.lr_scheduler import OneCycleLR
from miniai.core import def_device, set_seed, cache_dir, atomic_write, build_once
from miniai.learner import Callback, CancelFitException, ProgressCB
from miniai.schedules import linear_betas, alphas_cumprod, noisify, get_sigmas_karras
from miniai.samplers import EpsDenoiser
from miniai.unet import UNet2D, UNetConfig, save_unet, load_unet
from miniai.ddpm import diffusion_learner, generate
from miniai.ema import EMACB
from miniai.fid import fid_classifier, ImageEval, diffusion_dls

T = 1000
K_SAMPLERS = ('euler', 'euler_ancestral', 'heun', 'lms', 'dpmpp_2m')
ALL_SAMPLERS = ('ddim',) + K_SAMPLERS
UNETS = {   # tiny and course are nbs/19_ddpm's quick and full-size networks
    'tiny':   UNetConfig(nfs=(16, 32, 64), n_layers=1, attn_res=(8,), n_heads=2),
    'small':  UNetConfig(nfs=(32, 64, 128), n_layers=1, attn_res=(8,), n_heads=4),
    'course': UNetConfig(nfs=(32, 64, 128, 256), n_layers=2, attn_res=(8,)),
}
DEFAULTS = dict(unet='course', epochs=25, bs=512, lr=3e-3, n_train=None, n_valid=1000, max_minutes=None,
                n_samples=2048, sample_bs=512, nfes='10,20,50,100', ddpm1000=True, fid_net='full')
PRESETS = {
    'quick':      dict(unet='tiny', epochs=1, bs=64, n_train=512, n_valid=128, n_samples=128, sample_bs=128,
                       nfes='10,20', ddpm1000=False, fid_net='small'),
    'cpu_budget': dict(unet='tiny', epochs=100, bs=32, n_train=None, n_valid=512, max_minutes=12., n_samples=256,
                       sample_bs=128, nfes='10,20,50', ddpm1000=False, fid_net='small'),
}

# ------------------------------------------------------------------ training
class BudgetCB(Callback):
    "One-cycle lr (AdamW, as nbs/19_ddpm) over whichever runs out first, `total` batches or `max_minutes`; then stop."
    def __init__(self, lr:float, total:int, max_minutes:float|None=None, log_every:float=60.):
        self.lr, self.total, self.log_every = lr, total, log_every
        self.max_s = max_minutes * 60 if max_minutes else None
    def before_fit(self, learn):
        self.sched = OneCycleLR(learn.opt, max_lr=self.lr, total_steps=self.total)
        self.start = self.last_log = time.perf_counter()
        self.n, self.stopped_by_time, self.losses = 0, False, []
    def after_batch(self, learn):
        if not learn.training: return
        self.n += 1
        self.losses.append(learn.loss.item())
        el = time.perf_counter() - self.start
        frac = max(self.n / self.total, el / self.max_s if self.max_s else 0.)
        target = min(self.total - 1, math.ceil(frac * self.total))   # the schedule's last step is total-1
        while self.sched.last_epoch < target: self.sched.step()       # 1 step per batch unless time is shorter
        if time.perf_counter() - self.last_log > self.log_every:
            self.last_log = time.perf_counter()
            recent = self.losses[-50:]
            print(f'  batch {self.n} (epoch {learn.epoch}), {frac:.0%} of the budget, loss {sum(recent)/len(recent):.4f}, '
                  f'lr {learn.opt.param_groups[0]["lr"]:.2e}, {el/60:.1f} min', flush=True)
        if self.max_s and el >= self.max_s:
            self.stopped_by_time = True
            print(f'  time budget of {self.max_s/60:g} min reached after {self.n} batches: stopping', flush=True)
            raise CancelFitException()

def train_model(a, ab, device) -> tuple[UNet2D, UNet2D|None, dict]:
    "Train an eps-prediction U-Net on Fashion-MNIST in [-1, 1]; returns it, its EMA (None if `a.ema_decay` is 0) and a summary."
    set_seed(a.seed)
    dls = diffusion_dls(a.bs, n_train=a.n_train, n_valid=a.n_valid, seed=a.seed)
    model = UNet2D(UNETS[a.unet])
    total = a.epochs * len(dls.train)
    budget = BudgetCB(a.lr, total, a.max_minutes)
    ema_cb = EMACB(decay=a.ema_decay, warmup=True) if a.ema_decay else None
    print(f'training U-Net {a.unet!r} ({sum(p.numel() for p in model.parameters()):,} parameters) on {device}: '
          f'up to {a.epochs} epoch(s) of {len(dls.train)} batches of {a.bs}'
          + (f', at most {a.max_minutes:g} min' if a.max_minutes else ''), flush=True)
    learn = diffusion_learner(model, dls, partial(noisify, alphas_cumprod=ab), lr=a.lr, seed=a.seed, device=device,
                              cbs=[budget, ProgressCB()] + ([ema_cb] if ema_cb else []),
                              opt_func=partial(torch.optim.AdamW, weight_decay=1e-5))
    start = time.perf_counter()
    learn.fit(a.epochs)
    mins = (time.perf_counter() - start) / 60
    last = budget.losses[-50:]
    info = dict(batches=budget.n, epochs=round(budget.n / len(dls.train), 3), minutes=round(mins, 2),
                stopped_by_time=budget.stopped_by_time, final_train_loss=round(sum(last) / len(last), 5),
                first_train_loss=round(budget.losses[0], 5))
    print(f'trained {info["batches"]} batches ({info["epochs"]} epochs) in {mins:.1f} min; '
          f'training loss {info["first_train_loss"]:.3f} -> {info["final_train_loss"]:.4f} (mean of the last 50)', flush=True)
    return model.eval(), (ema_cb.model.eval() if ema_cb else None), info

class OracleEps:
    "The eps-model of the exact denoiser of a finite image set: what a perfectly trained model of that set predicts."
    def __init__(self, images:torch.Tensor, ab:torch.Tensor, device):
        self.data = images.flatten(1).to(device)                  # (N, D)
        self.sq = (self.data ** 2).sum(1)                         # (N,)
        self.t_to_sigma = EpsDenoiser(None, ab).t_to_sigma
    @torch.no_grad()
    def __call__(self, x_t, t):
        s = self.t_to_sigma(t).to(x_t.device, x_t.dtype).reshape(-1, *[1] * (x_t.ndim - 1))   # (B, 1, 1, 1)
        x = (x_t * (1 + s ** 2).sqrt()).flatten(1)                # on the sigma scale, (B, D)
        d2 = (x ** 2).sum(1, keepdim=True) - 2 * x @ self.data.T + self.sq              # (B, N) squared distances
        w = (-d2 / (2 * s.flatten()[:, None] ** 2)).softmax(1)    # posterior over the N images
        denoised = (w @ self.data).reshape(x_t.shape)             # E[x0 | x], the exact denoiser
        return (x.reshape(x_t.shape) - denoised) / s              # eps = (x - D(x)) / sigma

def default_model_path(a) -> Path:
    lim = f'_m{a.max_minutes:g}' if a.max_minutes else ''
    ema = f'_ema{a.ema_decay:g}' if a.ema_decay else ''
    return cache_dir('models')/f'ddpm_fid_table_{a.unet}_bs{a.bs}_e{a.epochs}_n{a.n_train or "all"}{lim}{ema}_s{a.seed}.safetensors'

def ema_path(path:Path) -> Path: return path.with_name(path.stem + '_ema.safetensors')

# ------------------------------------------------------------------ evaluation
def feature_net(kind:str, device):
    "`fid_classifier()`'s course network ('full') or the small one it trains in quick mode ('small'), from the cache."
    return fid_classifier(device=device, progress=True, size=kind)

class CountingDenoiser:
    "Wrap a denoiser and count how often it is called (each call is one model evaluation of the whole batch)."
    def __init__(self, den): self.den, self.calls = den, 0
    def __call__(self, x, sigma):
        self.calls += 1
        return self.den(x, sigma)

def plan(sampler:str, nfe:int, den:EpsDenoiser, rho:float, spacing:str) -> tuple[int, torch.Tensor]:
    "`(steps, sigmas)` that make `sampler` evaluate the model (at most) `nfe` times."
    steps = (nfe + 1) // 2 if sampler == 'heun' else nfe    # heun: 2 evaluations per step, 1 on the last
    if sampler in ('ddim', 'ddpm'): return steps, den.get_sigmas(steps, spacing=spacing)
    return steps, get_sigmas_karras(steps, den.sigma_min, den.sigma_max, rho=rho)

def sample(den, sampler, sigmas, n, bs, seed, device, eta=None):
    "`n` images in batches of `bs`, all drawn from one generator seeded with `seed`; returns (images, NFE per image)."
    cden, g, out = CountingDenoiser(den), torch.Generator().manual_seed(seed), []
    kw = {} if eta is None else {'eta': eta}
    for i in range(0, n, bs): out.append(generate(cden, sampler, min(bs, n - i), sigmas, generator=g, device=device, **kw))
    return torch.cat(out), cden.calls // len(out)

# ------------------------------------------------------------------ report
def fmt_cell(r, budget, kid_scale=1e3):
    s = f'{r["fid"]:.2f} / {r["kid"] * kid_scale:.2f}'
    return s + (f' ({r["nfe"]})' if r['nfe'] != budget else '')

def table(results, floor, nfes, key='') -> str:
    "The sampler x NFE table of `fid{key}` / `kid{key}` (key '' for the trained weights, '_ema' for the EMA)."
    results = [dict(r, fid=r['fid' + key], kid=r['kid' + key]) for r in results if 'fid' + key in r]
    rows = ['| sampler | ' + ' | '.join(f'NFE {n}' for n in nfes) + ' |', '|---|' + '---|' * len(nfes)]
    for s in dict.fromkeys(r['sampler'] for r in results if r['sampler'] != 'ddpm'):
        cells = []
        for n in nfes:
            r = next((r for r in results if r['sampler'] == s and r['budget'] == n), None)
            cells.append(fmt_cell(r, n) if r else '-')
        rows.append(f'| {s}{" *" if s == "heun" else ""} | ' + ' | '.join(cells) + ' |')
    for r in results:
        if r['sampler'] == 'ddpm': rows.append(f'| ddpm ancestral, 1000 steps | {fmt_cell(r, r["nfe"])} |' + ' |' * (len(nfes) - 1))
    rows.append(f'| real-data floor | {floor["fid"]:.2f} / {floor["kid"] * 1e3:.2f} |' + ' |' * (len(nfes) - 1))
    return '\n'.join(rows)

# ------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='smoke-test preset: ~2 min on a CPU, numbers meaningless')
    p.add_argument('--cpu_budget', action='store_true', help='bounded real CPU run: tiny U-Net, 12 min of training')
    p.add_argument('--unet', choices=list(UNETS), help='U-Net size: tiny (CPU), small, course (GPU, nbs/19 full size)')
    p.add_argument('--epochs', type=int); p.add_argument('--bs', type=int, help='training batch size')
    p.add_argument('--lr', type=float, help='peak learning rate of the one-cycle schedule')
    p.add_argument('--n_train', type=int, help='training images (default: all 60000)')
    p.add_argument('--n_valid', type=int, help='validation images for the per-epoch loss')
    p.add_argument('--max_minutes', type=float, help='stop training after this many minutes (and still save)')
    p.add_argument('--model', type=Path, help='a save_unet checkpoint: loaded if it exists, else trained and saved there')
    p.add_argument('--retrain', action='store_true', help='train even if the checkpoint exists')
    p.add_argument('--oracle', type=int, default=0, help='no U-Net: sample the exact denoiser of this many training '
                   'images instead (checks the samplers and the FID pipeline; its samples are copies of those images)')
    p.add_argument('--n_samples', type=int, help='generated images per sampler, and real images for the reference/floor')
    p.add_argument('--sample_bs', type=int, help='images sampled at once')
    p.add_argument('--nfes', type=str, help='comma-separated budgets of model evaluations, e.g. 10,20,50,100')
    p.add_argument('--samplers', type=str, default=','.join(ALL_SAMPLERS), help='comma-separated subset of the samplers')
    p.add_argument('--ddpm1000', action=argparse.BooleanOptionalAction, default=None, help='also DDPM with all 1000 steps')
    p.add_argument('--fid_net', choices=('full', 'small'), help="fid_classifier()'s course feature net, or its quick-mode one")
    p.add_argument('--kid_subsets', type=int, default=100, help='random subsets averaged by KID')
    p.add_argument('--rho', type=float, default=7., help='rho of the Karras sigmas')
    p.add_argument('--spacing', default='trailing', help='timestep spacing for ddim/ddpm (see spaced_timesteps)')
    p.add_argument('--ema_decay', type=float, default=0.999, help='EMA decay (with warmup) kept while training; 0: no EMA')
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: leave the default)')
    p.add_argument('--out', type=Path, help='write the results as JSON here')
    a = p.parse_args(argv)
    if a.quick and a.cpu_budget: p.error('choose one preset: --quick or --cpu_budget')
    preset = PRESETS['quick'] if a.quick else PRESETS['cpu_budget'] if a.cpu_budget else {}
    for k, v in {**DEFAULTS, **preset}.items():
        if getattr(a, k) is None: setattr(a, k, v)
    try: a.nfes = sorted({int(n) for n in str(a.nfes).split(',') if n.strip()})
    except ValueError: p.error(f'--nfes must be comma-separated integers, got {a.nfes!r}')
    if not a.nfes or min(a.nfes) < 1 or max(a.nfes) > T: p.error(f'--nfes must be integers between 1 and {T}, got {a.nfes}')
    a.samplers = [s.strip() for s in a.samplers.split(',') if s.strip()]
    bad = [s for s in a.samplers if s not in ALL_SAMPLERS]
    if bad: p.error(f'unknown sampler(s) {bad}: choose from {",".join(ALL_SAMPLERS)}')
    if a.n_samples < 2: p.error('--n_samples must be at least 2 (and thousands for a stable FID)')
    return a

def main(argv=None):
    a = parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    device = def_device
    preset = 'quick' if a.quick else 'cpu_budget' if a.cpu_budget else 'full'
    print(f'fid_table: preset {preset}, device {device}, {torch.get_num_threads()} CPU thread(s), '
          f'unet {a.unet}, {a.n_samples} samples, NFE {a.nfes}, feature net {a.fid_net}', flush=True)

    # 1. the evaluator and the real-data floor
    fnet = feature_net(a.fid_net, device)
    n = a.n_samples
    real_test = torch.cat([b[0] for b in diffusion_dls(n, n_train=n, n_valid=n).valid])[:n]
    real_train = next(iter(diffusion_dls(n, n_train=n, seed=a.seed).train))[0]
    if len(real_test) < n: raise ValueError(f'--n_samples {n} is more than the {len(real_test)} test images available.')
    ie = ImageEval(fnet, real_test)
    kid = partial(ie.kid, n_subsets=a.kid_subsets)
    floor = dict(fid=ie.fid(real_train), kid=kid(real_train))
    print(f'real-data floor ({n} train vs {n} test images, {ie.ref.shape[1]}-d features): '
          f'FID {floor["fid"]:.3f}, KID {floor["kid"]:.5f}  [{time.perf_counter() - t0:.0f}s]', flush=True)

    # 2. the model
    ab = alphas_cumprod(linear_betas(T))
    path = a.model or default_model_path(a)
    model = ema = None
    if a.oracle:
        data = next(iter(diffusion_dls(a.oracle, n_train=a.oracle, seed=a.seed + 2).train))[0]
        eps_model, train_info = OracleEps(data, ab, device), dict(oracle_images=len(data))
        print(f'no U-Net: the exact denoiser of {len(data)} training images', flush=True)
    else:   # trained once and cached: a second run started meanwhile waits for this one's model (build_once)
        trained = {}
        def train(tmp):
            m, e, info = train_model(a, ab, device)
            if e is not None: save_unet(e, ema_path(path))     # first: the model file is what marks the build done
            save_unet(m, tmp)
            trained.update(model=m, ema=e, info=info | dict(saved_to=str(path)))
        build_once(path, train, valid=lambda p: p.exists() and not (a.retrain and not trained))
        if trained:
            model, ema, train_info = trained['model'], trained['ema'], trained['info']
            print(f'saved the model to {path}', flush=True)
        else:
            model, train_info = load_unet(path, device), dict(loaded_from=str(path))
            print(f'loaded the model from {path} ({sum(p.numel() for p in model.parameters()):,} parameters)', flush=True)
            if a.ema_decay and ema_path(path).exists(): ema = load_unet(ema_path(path), device)
            elif a.ema_decay: print(f'no EMA weights at {ema_path(path)}: scoring the trained weights only', flush=True)
    if model is not None: eps_model = model.eval().to(device)
    den = EpsDenoiser(eps_model, ab)
    den_ema = None if ema is None else EpsDenoiser(ema.eval().to(device), ab)

    # 3. every sampler at every budget
    runs = [(s, nfe) for s in a.samplers for nfe in a.nfes] + ([('ddpm', T)] if a.ddpm1000 else [])
    results = []
    print(f'sampling {len(runs)} configurations of {n} images (sigma from {den.sigma_max:.1f} down to {den.sigma_min:.4f})', flush=True)
    for i, (s, budget) in enumerate(runs):
        st = time.perf_counter()
        steps, sigmas = plan(s, budget, den, a.rho, a.spacing)
        r = dict(sampler=s, budget=budget, steps=steps)
        for key, d in (('', den), ('_ema', den_ema)):    # the same noise (seed) for the trained and the EMA weights
            if d is None: continue
            ims, nfe = sample(d, s, sigmas, n, a.sample_bs, a.seed + 1, device, eta=0. if s == 'ddim' else None)
            if not torch.isfinite(ims).all(): raise FloatingPointError(f'{s} at {steps} steps produced NaN/inf images{key and " (EMA)"}.')
            r.update({'nfe': nfe, 'fid' + key: ie.fid(ims), 'kid' + key: kid(ims)})
            r[f'fid{key}_over_floor'] = r['fid' + key] / floor['fid']
        r['seconds'] = round(time.perf_counter() - st, 1)
        results.append(r)
        ema_s = (f' | EMA: FID {r["fid_ema"]:8.3f} ({r["fid_ema_over_floor"]:5.2f}x floor)  KID {r["kid_ema"]:.5f}'
                 if 'fid_ema' in r else '')
        print(f'[{i+1}/{len(runs)}] {s:>15} NFE {nfe:>4} ({steps:>4} steps): FID {r["fid"]:8.3f} ({r["fid_over_floor"]:5.2f}x floor)'
              f'  KID {r["kid"]:.5f}{ema_s}  [{r["seconds"]:.0f}s, total {(time.perf_counter() - t0) / 60:.1f} min]', flush=True)

    # 4. the report
    what = f'the exact denoiser of {a.oracle} training images' if a.oracle else f'U-Net {a.unet}'
    print(f'\n## {what}: FID / KID x 1e3 against {n} real test images ({a.fid_net} feature net; lower is better)\n')
    print('trained weights:\n' + table(results, floor, a.nfes))
    if den_ema is not None: print(f'\nEMA weights (decay {a.ema_decay:g}, warmup), same training run and noise:\n' + table(results, floor, a.nfes, '_ema'))
    if any(r['sampler'] == 'heun' for r in results):
        print('\n\\* heun evaluates the model twice per step except on the last step (to sigma=0): a budget of N NFE gives '
              '(N+1)//2 steps. Numbers in brackets are the evaluations actually made where they differ from the column.')
    bests = {}
    for key, name in (('', 'trained weights'), ('_ema', 'EMA weights')):
        best = min((r for r in results if r['nfe'] <= 20 and 'fid' + key in r), key=lambda r: r['fid' + key], default=None)
        if not best: continue
        ratio = best['fid' + key] / floor['fid']
        bests[key or '_trained'] = dict(sampler=best['sampler'], nfe=best['nfe'], fid=best['fid' + key], ratio=ratio)
        print(f'\nbest at <= 20 NFE, {name}: {best["sampler"]} with {best["nfe"]} NFE, FID {best["fid" + key]:.3f} = {ratio:.2f}x the floor '
              f'{floor["fid"]:.3f} (target <= 1.5x: {"met" if ratio <= 1.5 else "not met"})')
    best = next((r for r in results if bests.get('_trained') and r['sampler'] == bests['_trained']['sampler']
                 and r['nfe'] == bests['_trained']['nfe']), None)
    total = time.perf_counter() - t0
    print(f'total wall time {total / 60:.1f} min')
    if a.out:
        cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
        rep = dict(config=cfg, preset=preset, device=str(device), threads=torch.get_num_threads(),
                   unet_config=None if model is None else {k: getattr(model.cfg, k) for k in model.cfg.__dataclass_fields__},
                   feature_dim=int(ie.ref.shape[1]), train=train_info, floor=floor, results=results,
                   best_le_20=(dict(best, ratio=best['fid'] / floor['fid']) if best else None),
                   best_le_20_by_weights=bests, table=table(results, floor, a.nfes),
                   table_ema=table(results, floor, a.nfes, '_ema') if den_ema is not None else None, wall_minutes=round(total / 60, 2))
        with atomic_write(a.out, 'w') as f: json.dump(rep, f, indent=1)
        print(f'wrote {a.out}')
    return results

if __name__ == '__main__': main()
