"""The Learner's contracts that the notebook does not spell out: when losses are read to the host, what the
NaN check names, metrics on the device, course-style calls, and the LR finder's clean-up.

    python -m pytest -q -p no:cacheprovider tests/test_learner.py
"""
import math
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from torcheval.metrics import MulticlassAccuracy
from miniai.core import set_seed, def_device
from miniai.datasets import DataLoaders, TensorLoader
from miniai.learner import (Callback, Learner, TrainLearner, TrainCB, DeviceCB, MetricsCB, ProgressCB, LRFinderCB,
                            CancelEpochException, synth_dls, fused_adamw)


class NaNAt(Callback):
    "Make the loss NaN at (epoch, iter) of the training or validation phase."
    def __init__(self, epoch, it, training=True): self.at, self.training = (epoch, it), training
    def after_loss(self, learn):
        if learn.training == self.training and (learn.epoch, learn.iter) == self.at: learn.loss = learn.loss * float('nan')


def count_reads(learn):
    "Wrap `learn._read_losses` to count the reads that copied something to the host."
    learn.n_reads, orig = 0, learn._read_losses
    def _read():
        if learn._pending: learn.n_reads += 1
        orig()
    learn._read_losses = _read
    return learn


@pytest.mark.parametrize('sync_every', [1, 3, 4, 100])
def test_nan_names_batch_whatever_the_read_interval(sync_every):
    learn = TrainLearner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, cbs=[NaNAt(2, 6)], sync_every=sync_every)
    with pytest.raises(FloatingPointError, match='epoch 2, batch 6 \\(training\\)'): learn.fit(4)


def test_nan_in_validation_is_named():
    learn = TrainLearner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, cbs=[NaNAt(0, 1, training=False)], sync_every=8)
    with pytest.raises(FloatingPointError, match='epoch 0, batch 1 \\(validation\\)'): learn.fit(2)


def test_check_finite_false_trains_on():
    learn = TrainLearner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, cbs=[NaNAt(0, 2)])
    learn.fit(1, check_finite=False)
    assert math.isnan(learn.model.weight.item())


def test_one_read_per_sync_every_batches_and_per_epoch():
    # synth_dls: 8 training and 2 validation batches per epoch
    learn = count_reads(TrainLearner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, sync_every=4))
    learn.fit(2)
    assert learn.n_reads == 2 * (2 + 1)
    learn = count_reads(TrainLearner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, sync_every=5))
    learn.fit(1)
    assert learn.n_reads == 2 + 1     # batches 0-4, then 5-7 at the epoch's end; then validation
    assert len(learn.batch_losses) == 2 and all(map(math.isfinite, learn.batch_losses))


def test_cancelled_epoch_losses_are_read():
    class StopAt3(Callback):
        def after_batch(self, learn):
            if learn.training and learn.iter == 3: raise CancelEpochException()
    learn = TrainLearner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, cbs=[StopAt3()], sync_every=100)
    learn.fit(1, valid=False)
    assert len(learn.batch_losses) == 4 and not learn._pending


def test_non_scalar_loss_is_kept_as_its_mean():
    learn = TrainLearner(nn.Linear(1, 1), synth_dls(), lambda p, y: ((p - y)**2).squeeze(1), lr=0.1)
    learn.opt_func = None                        # a non-scalar loss cannot backward: only evaluate
    learn.fit(1, train=False)
    assert len(learn.batch_losses) == len(learn.dls.valid)


def test_metrics_stay_on_device_and_match_a_direct_evaluation():
    set_seed(0)
    x, y = torch.randn(200, 5), torch.randint(0, 3, (200,))
    dls = DataLoaders(TensorLoader(x, y, 32, mean=None), TensorLoader(x, y, 64, mean=None))
    model = nn.Linear(5, 3)
    learn = TrainLearner(model, dls, F.cross_entropy, lr=0.1, cbs=[DeviceCB(), MetricsCB(MulticlassAccuracy(), log=False)])
    learn.fit(1, train=False)
    m = learn.metrics.metrics['MulticlassAccuracy']
    assert m.device.type == def_device.type
    with torch.no_grad(): p = model.cpu()(x)
    assert learn.history[-1]['MulticlassAccuracy'] == float(f'{(p.argmax(1) == y).float().mean():.3f}')
    assert abs(learn.history[-1]['loss'] - F.cross_entropy(p, y).item()) < 1e-3


def test_metrics_take_half_precision_predictions():
    class Half(nn.Module):
        def __init__(self): super().__init__(); self.lin = nn.Linear(1, 3)
        def forward(self, x): return self.lin(x).to(torch.bfloat16)
    x, y = torch.randn(64, 1), torch.randint(0, 3, (64,))
    dls = DataLoaders(TensorLoader(x, y, 16, mean=None), TensorLoader(x, y, 16, mean=None))
    learn = TrainLearner(Half(), dls, lambda p, y: F.cross_entropy(p.float(), y), lr=0.1,
                         cbs=[MetricsCB(acc=MulticlassAccuracy(), log=False)])
    learn.fit(1)
    assert 0 <= learn.history[-1]['acc'] <= 1


def test_metrics_log_false_prints_nothing(capsys):
    TrainLearner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, cbs=[MetricsCB(log=False)]).fit(1)
    assert capsys.readouterr().out == ''
    TrainLearner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, cbs=[MetricsCB()]).fit(1)
    assert "'loss'" in capsys.readouterr().out


def test_progress_plain_lines_with_metrics(capsys):
    TrainLearner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, cbs=[MetricsCB(log=False), ProgressCB(plot=True)]).fit(2)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ['loss', 'epoch', 'train'] and len(out) == 1 + 2 * 2


def test_course_style_inner_step_call_and_no_optimizer():
    learn = Learner(nn.Linear(1, 1), synth_dls(), F.mse_loss, lr=0.1, cbs=[TrainCB()], opt_func=None)
    learn.batch = next(iter(learn.dls.train))
    with torch.no_grad(): learn.predict(); learn.get_loss()    # the course's Learner allowed this
    assert learn.loss.ndim == 0
    learn.opt = torch.optim.SGD(learn.model.parameters(), 0.1)   # opt_func=None: the caller brings the optimizer
    learn.fit(2)
    assert learn.loss.item() < 1


def test_no_lr_is_a_clear_error():
    with pytest.raises(ValueError, match='No learning rate'): TrainLearner(nn.Linear(1, 1), synth_dls(), lr=None).fit(1)
    learn = TrainLearner(nn.Linear(1, 1), synth_dls(), lr=None)
    learn.fit(1, lr=0.1)                                         # lr given to fit instead
    assert learn.opt.param_groups[0]['lr'] == 0.1


def test_lr_finder_through_fit_restores_lr_and_check(monkeypatch):
    import matplotlib.pyplot as plt
    monkeypatch.setattr(plt, 'subplots', lambda *a, **k: (None, type('Ax', (), {'__getattr__': lambda s, n: lambda *a, **k: None})()))
    learn = TrainLearner(nn.Linear(1, 1), synth_dls(n_train=2048), F.mse_loss)
    cb = LRFinderCB(gamma=2.)
    learn.fit(3, lr=1e-4, cbs=cb)
    assert len(cb.lrs) > 3 and learn.opt.param_groups[0]['lr'] == 1e-4 and learn.check_finite
    assert cb not in learn.cbs


def test_lr_find_survives_an_exploding_loss():
    learn = TrainLearner(nn.Linear(1, 1), synth_dls(n_train=4096), F.mse_loss)
    w = learn.model.weight.detach().clone()
    lrs, losses = learn.lr_find(gamma=3., max_mult=math.inf, plot=False)   # only the NaN/inf stops it
    assert not math.isfinite(losses[-1]) and torch.equal(learn.model.weight.detach(), w)


def test_fused_adamw_param_groups():
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    opt = fused_adamw([{'params': m[0].parameters()}, {'params': m[1].parameters(), 'lr': 1e-2}], 1e-3)
    assert opt.defaults['fused'] is True and opt.param_groups[1]['lr'] == 1e-2
    opt = fused_adamw(m.parameters(), 1e-3, fused=False)
    assert opt.defaults['fused'] is False


def test_whole_data_set_on_the_device():
    x = torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8).to(def_device)
    y = torch.randint(0, 10, (100,)).to(def_device)
    xb, yb = next(iter(TensorLoader(x, y, 32, shuffle=True, seed=0)))
    assert xb.device == x.device and yb.device == x.device and xb.dtype == torch.float32 and xb.shape == (32, 1, 28, 28)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_no_host_device_sync_inside_a_batch():
    "On CUDA, nothing between before_batch and after_batch may wait for the GPU (reads happen every sync_every)."
    class NoSync(Callback):
        order = -100
        def before_batch(self, learn):   # the fit's first batch moves the metrics' states to the GPU, once
            if (learn.epoch, learn.iter, learn.training) != (0, 0, True): torch.cuda.set_sync_debug_mode('error')
        def cleanup_batch(self, learn): torch.cuda.set_sync_debug_mode('default')
    class Back(Callback):   # the read at a sync point is allowed: switch the check off just before it
        order = 100
        def after_loss(self, learn):
            if len(learn._pending) + 1 >= learn.sync_every: torch.cuda.set_sync_debug_mode('default')
    x = torch.randint(0, 256, (2048, 28, 28), dtype=torch.uint8).cuda()
    y = torch.randint(0, 10, (2048,)).cuda()
    dls = DataLoaders(TensorLoader(x, y, 128, shuffle=True, seed=0), TensorLoader(x[:512], y[:512], 256))
    model = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8*14*14, 10))
    learn = TrainLearner(model, dls, F.cross_entropy, lr=1e-3, opt_func=fused_adamw, sync_every=32,
                         cbs=[DeviceCB(), MetricsCB(MulticlassAccuracy(), log=False), NoSync(), Back()])
    try: learn.fit(2)
    finally: torch.cuda.set_sync_debug_mode('default')
    assert learn.history[-1]['MulticlassAccuracy'] >= 0
