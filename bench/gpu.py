"""What a GPU does with miniai: U-Net training throughput in fp32, bf16 autocast and bf16 + channels_last +
torch.compile, model FLOPs utilisation, peak memory, and the full 5-epoch ResNet accuracy. At most ~8 minutes on
one H100/H200.

1. U-Net: the course U-Net of nbs/19_ddpm (UNet2D, nfs 32-64-128-256, 2 blocks a level, attention at 8x8),
   trained as DDPM trains it (`noisify` with linear betas, MSE on the noise, AdamW), on Fashion-MNIST already on
   the device (batches by indexing on the GPU). Three settings, each from the same initial weights:
     fp32      (PyTorch's defaults: cuDNN may use TF32 for convolutions)
     bf16      autocast to bfloat16
     fast      bf16 autocast + channels_last + torch.compile
   For each: images/s over `--steps` timed steps after warm-up (compile time reported apart), peak allocated GPU
   memory, and MFU = (training FLOPs per image x images/s) / the GPU's dense bf16 peak. The FLOPs per image are
   counted once by `torch.utils.flop_counter.FlopCounterMode` over a forward+backward of the eager model
   (convolutions, matmuls, attention; element-wise work is not counted, as usual for MFU).
   Target: fast >= 2x fp32.
2. ResNet: nbs/13_resnet's recipe, full size: resnet(16..512), bs 256, miniai's Adam, one-cycle lr 1e-2, 5 epochs,
   through the Learner; test accuracy against the anchor 0.928.

    python bench/gpu.py                 # on a GPU
    python bench/gpu.py --cpu-smoke     # tiny sizes on the CPU (compile with the 'eager' backend): seconds
"""
from __future__ import annotations
import warnings
warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)   # torcheval, at import
import argparse, time, os
from functools import partial
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from torcheval.metrics import MulticlassAccuracy
from miniai.core import set_seed
from miniai.datasets import DataLoaders, fashion_mnist_arrays, to_float
from miniai.learner import TrainLearner, DeviceCB, MetricsCB, ProgressCB
from miniai.optim import Adam, BatchSchedCB
from miniai.resnet import resnet
from miniai.unet import UNet2D, UNetConfig
from miniai.schedules import linear_betas, alphas_cumprod, noisify

PEAK_BF16_TFLOPS = {'H200': 989., 'H100': 989., 'A100': 312., 'L40S': 362., 'A10G': 70., 'L4': 121., 'RTX 4090': 165.}

def peak_tflops(device, override=None):
    "Dense bf16 peak of the GPU (from its name), or `override`; None when unknown."
    if override: return override
    if device.type != 'cuda': return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)

def train_flops_per_image(model, x, t, y) -> float:
    "FLOPs of one forward + backward of `model` on batch `x`, per image (FlopCounterMode)."
    with FlopCounterMode(display=False) as fc:
        F.mse_loss(model(x, t), y).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / len(x)

def unet_throughput(a, device) -> list:
    cfg = UNetConfig(nfs=(32, 64, 128, 256), n_layers=2, attn_res=(8,)) if not a.cpu_smoke else \
          UNetConfig(nfs=(8, 16), n_layers=1, attn_res=(16,), n_heads=1, norm_groups=4)
    xs = to_float(fashion_mnist_arrays()['train'][0][:a.n_images], 0.5, 0.5, pad=2).to(device)   # (N,1,32,32) in [-1, 1]
    ab = alphas_cumprod(linear_betas(1000)).to(device)
    set_seed(0)
    init = UNet2D(cfg).state_dict()
    peak = peak_tflops(device, a.peak_tflops)
    rows, flops_img = [], None
    for name, bf16, fast in (('fp32', False, False), ('bf16 autocast', True, False), ('bf16 + channels_last + compile', True, True)):
        model = UNet2D(cfg); model.load_state_dict(init); model.to(device)
        fmt = torch.channels_last if fast else torch.contiguous_format
        model = model.to(memory_format=fmt)
        opt = torch.optim.AdamW(model.parameters(), 1e-3, fused=device.type == 'cuda')
        step_model = torch.compile(model, backend=a.compile_backend) if fast else model
        g = torch.Generator(device=device).manual_seed(0)
        def batch():
            idx = torch.randint(0, len(xs), (a.bs,), device=device, generator=g)
            (x_t, t), eps = noisify(xs[idx], ab, generator=g)
            return x_t.contiguous(memory_format=fmt), t, eps
        if flops_img is None:
            x_t, t, eps = batch()
            flops_img = train_flops_per_image(model, x_t, t, eps)
        def step():
            x_t, t, eps = batch()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.mse_loss(step_model(x_t, t).float(), eps)
            loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
            return loss
        if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(a.warmup): step()
        sync(device); warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(a.steps): loss = step()
        sync(device); secs = time.perf_counter() - t0
        ips = a.bs * a.steps / secs
        mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else float('nan')
        mfu = flops_img * ips / (peak * 1e12) if peak else float('nan')
        rows.append(dict(name=name, ips=ips, mfu=mfu, mem=mem, warm=warm, loss=loss.item()))
        print(f'  {name}: {ips:,.0f} images/s, warm-up {warm:.1f}s, peak memory {mem:.2f} GiB, loss {loss.item():.4f}', flush=True)
    n_params = sum(p.numel() for p in UNet2D(cfg).parameters())
    print(f'\nU-Net {cfg.nfs}, {n_params/1e6:.2f}M parameters, batch {a.bs}, {flops_img/1e9:.3f} GFLOP per image per '
          f'training step (forward+backward); MFU against {peak or "unknown"} TFLOPS dense bf16')
    print('| setting | images/s | vs fp32 | MFU | peak memory (GiB) | warm-up (s) |\n|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['name']} | {r['ips']:,.0f} | {r['ips']/rows[0]['ips']:.2f}x | {r['mfu']:.1%} | {r['mem']:.2f} | {r['warm']:.1f} |")
    return rows

def resnet_accuracy(a, device) -> float:
    nfs = (16, 32, 64, 128, 256, 512) if not a.cpu_smoke else (8, 16, 32)
    epochs, n_train, n_valid = (5, None, None) if not a.cpu_smoke else (1, 512, 256)
    set_seed(42)
    dls = DataLoaders.fashion(batch_size=256, n_train=n_train, n_valid=n_valid, seed=42, device=device)
    sched = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1e-2, total_steps=epochs * len(dls.train))
    learn = TrainLearner(resnet(nfs), dls, F.cross_entropy, lr=1e-2, opt_func=Adam,
                         cbs=[DeviceCB(device), MetricsCB(accuracy=MulticlassAccuracy()), ProgressCB(), BatchSchedCB(sched)])
    t0 = time.perf_counter()
    learn.fit(epochs)
    acc = learn.history[-1]['accuracy']
    print(f'ResNet {nfs}, {epochs} epochs: test accuracy {acc:.3f} (anchor 0.928) in {time.perf_counter()-t0:.0f}s')
    return acc

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cpu-smoke', action='store_true', help='tiny sizes on the CPU, to check the script runs (seconds)')
    p.add_argument('--bs', type=int, default=256)
    p.add_argument('--steps', type=int, default=50, help='timed training steps per setting')
    p.add_argument('--warmup', type=int, default=10, help='untimed steps first (they include compiling)')
    p.add_argument('--n_images', type=int, default=None, help='training images on the device (default: all 60000)')
    p.add_argument('--peak_tflops', type=float, help='dense bf16 peak of this GPU, if its name is not in the table')
    p.add_argument('--compile_backend', default='inductor')
    p.add_argument('--skip_resnet', action='store_true')
    a = p.parse_args()
    if a.cpu_smoke:
        a.bs, a.steps, a.warmup, a.n_images, a.compile_backend = 4, 2, 1, a.n_images or 256, 'eager'
        device = torch.device('cpu')
    else:
        if not torch.cuda.is_available(): raise SystemExit('bench/gpu.py: no CUDA GPU here. Use --cpu-smoke to check the script on a CPU.')
        device = torch.device('cuda')
    print(f'torch {torch.__version__} on {torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}', flush=True)
    t0 = time.perf_counter()
    unet_throughput(a, device)
    if not a.skip_resnet: resnet_accuracy(a, device)
    print(f'{time.perf_counter()-t0:.0f}s in all')

if __name__ == '__main__': main()
