"""miniai.accum: bad input, and GradAccumCB with fp16 + GradScaler, with AccelerateCB, and on two processes.

The two-process test starts this file under `torchrun` as the worker (as tests/test_accel_distributed.py does):
    torchrun --standalone --nproc_per_node 2 tests/test_accum.py OUT_DIR
"""
import json, os, subprocess, sys
from functools import partial
from pathlib import Path
import pytest
import torch
from torch import nn
import torch.nn.functional as F

N, EPOCHS = 100, 2   # 100 items: every epoch ends with a short batch and a partial window


def data():
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(N, 8, generator=g)
    return xs, torch.sin(xs @ torch.randn(8, 1, generator=g))


def fit(bs, *cbs, lr=0.05, opt_func=partial(torch.optim.SGD, momentum=0.9)):
    "The same seeded MLP (no BatchNorm) trained at batch size `bs` with `cbs`; returns (flat weights, learner)."
    from miniai.core import set_seed
    from miniai.datasets import DataLoaders, TensorLoader
    from miniai.learner import Learner, TrainCB
    xs, ys = data()
    set_seed(42)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    dls = DataLoaders(TensorLoader(xs, ys, batch_size=bs, shuffle=True, seed=1, mean=None),
                      TensorLoader(xs[:32], ys[:32], batch_size=bs, mean=None))
    learn = Learner(model, dls, F.mse_loss, lr=lr, cbs=[TrainCB(), *cbs], opt_func=opt_func)
    learn.fit(EPOCHS)
    m = getattr(learn.model, 'module', learn.model)
    return torch.cat([p.detach().flatten() for p in m.parameters()]), learn


@pytest.mark.parametrize('k', [0, -1, 2.0, 1.5, '4', None, True])
def test_bad_k(k):
    from miniai.accum import GradAccumCB
    with pytest.raises(ValueError, match=r'must be an int >= 1'): GradAccumCB(k)


def test_fp32_exact_and_partial_window():
    from miniai.accum import GradAccumCB
    w64, _ = fit(64)
    for bs, k in ((16, 4), (32, 2), (8, 8)): torch.testing.assert_close(fit(bs, GradAccumCB(k))[0], w64, rtol=1e-5, atol=1e-6)
    # flush=False drops the partial window: it differs from the batch-64 run (whose last batch is 36)
    assert (fit(16, GradAccumCB(4, flush=False))[0] - w64).abs().max() > 1e-3


def test_fp16_gradscaler():
    "fp16 autocast with a GradScaler on the CPU: the scaler sees one step per window, the weights match batch 64."
    from miniai.accel import MixedPrecision
    from miniai.accum import GradAccumCB
    mp64, mp16 = MixedPrecision(torch.float16), MixedPrecision(torch.float16)
    w64, _ = fit(64, mp64, lr=0.05)
    w16x4, _ = fit(16, mp16, GradAccumCB(4), lr=0.05)
    w16, _ = fit(16, MixedPrecision(torch.float16), lr=0.05)
    assert mp16.scaler is not None and mp16.scaler.get_scale() == mp64.scaler.get_scale()
    assert mp16.scaler._growth_tracker.item() == mp64.scaler._growth_tracker.item() == 2 * EPOCHS   # optimizer steps
    d_acc, d_plain = (w16x4 - w64).abs().max().item(), (w16 - w64).abs().max().item()
    assert d_acc < 1e-2 and d_acc < d_plain / 10, (d_acc, d_plain)


def test_fp16_overflow_skips_the_window():
    "An inf gradient in one batch of a window makes GradScaler skip that window's step (and lower the scale)."
    from miniai.accel import MixedPrecision
    from miniai.accum import GradAccumCB
    from miniai.learner import Callback
    class Poison(Callback):
        order = 0
        def after_backward(self, learn):
            if learn.epoch == 0 and learn.iter == 1:
                with torch.no_grad(): next(learn.model.parameters()).grad.view(-1)[0] = float('inf')
    mp = MixedPrecision(torch.float16)
    w, learn = fit(16, mp, GradAccumCB(4), Poison())
    assert torch.isfinite(w).all()
    assert mp.scaler.get_scale() == 65536.0 / 2   # one backoff; the other steps did not grow it back (2000 needed)


def test_accelerate_one_process():
    from miniai.accel import AccelerateCB
    from miniai.accum import GradAccumCB
    w64, _ = fit(64)
    torch.testing.assert_close(fit(16, AccelerateCB(cpu=True), GradAccumCB(4))[0], w64, rtol=1e-5, atol=1e-6)


def test_accelerate_own_accumulation_refused():
    from miniai.accel import AccelerateCB
    from miniai.accum import GradAccumCB
    with pytest.raises(ValueError, match='gradient_accumulation_steps=2'):
        fit(16, AccelerateCB(cpu=True, gradient_accumulation_steps=2), GradAccumCB(2))


def worker(out):
    "One process: global batches of 16 (8 per process), k=2, through AccelerateCB (DDP, gloo)."
    from miniai.accel import AccelerateCB
    from miniai.accum import GradAccumCB
    from miniai.learner import Callback
    class SyncCount(Callback):   # how many backwards ran under no_sync
        order = 100
        def before_fit(self, learn):
            self.n, self.no_sync = 0, 0
            m = learn.model
            orig = m.no_sync
            def counted():
                self.no_sync += 1
                return orig()
            m.no_sync = counted
        def after_backward(self, learn): self.n += 1
    acc_cb, sc = AccelerateCB(cpu=True), SyncCount()
    w, learn = fit(16, acc_cb, sc, GradAccumCB(2))
    rank = acc_cb.acc.process_index
    Path(out, f'rank{rank}.json').write_text(json.dumps(dict(
        w=w.tolist(), wrapped=type(learn.model).__name__, n=sc.n, no_sync=sc.no_sync)))


@pytest.mark.skipif(not torch.distributed.is_available(), reason='torch.distributed is not available')
def test_two_processes(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MINIAI_DEVICE': 'cpu'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', __file__, str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    infos = [json.loads((tmp_path/f'rank{i}.json').read_text()) for i in range(2)]
    assert all(i['wrapped'] == 'DistributedDataParallel' for i in infos)
    # 7 batches of 16 per epoch (the last of 4): windows (2,2,2,1); the first batch of each full window skips the all-reduce
    assert infos[0]['n'] == 7 * EPOCHS and infos[0]['no_sync'] == 3 * EPOCHS
    assert infos[0]['w'] == infos[1]['w']
    w32, _ = fit(32)   # one process, batches of 32
    torch.testing.assert_close(torch.tensor(infos[0]['w']), w32, rtol=1e-5, atol=1e-6)


if __name__ == '__main__': worker(sys.argv[1])
