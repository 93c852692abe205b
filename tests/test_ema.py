"""miniai.ema: bad input, the warmup formula, and exact resumption of the average through CheckpointCB."""
import math
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from miniai.core import set_seed
from miniai.learner import Learner, TrainCB, synth_dls, CancelFitException, Callback
from miniai.accel import CheckpointCB, load_checkpoint, read_checkpoint
from miniai.ema import ema_warmup, ema_model, EMACB


def learner(cbs=(), seed=0):
    set_seed(seed)
    model = nn.Sequential(nn.Linear(1, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    return Learner(model, synth_dls(seed=0), F.mse_loss, lr=0.05, cbs=[TrainCB(), *cbs])


@pytest.mark.parametrize('decay', [0, 0., 1, 1., -0.5, 1.5, float('nan'), float('inf'), '0.9', None])
def test_bad_decay(decay):
    with pytest.raises(ValueError, match=r'decay must be a number in \(0, 1\)'): EMACB(decay=decay)
    with pytest.raises(ValueError, match=r'decay must be a number in \(0, 1\)'): ema_model(nn.Linear(1, 1), decay=decay)


def test_bad_warmup_args():
    with pytest.raises(ValueError, match='power must be > 0'): EMACB(power=0)
    with pytest.raises(ValueError, match='inv_gamma must be > 0'): EMACB(inv_gamma=-1)


def test_warmup_formula():
    for n in [0, 1, 5, 100, 12345]:
        for p, g in [(2/3, 1.), (0.75, 10.), (1., 1.)]:
            assert math.isclose(ema_warmup(n, p, g), min(0.9999, 1 - (1 + n / g) ** -p), rel_tol=1e-12)
    assert ema_warmup(1, min_decay=0.5) == 0.5 and ema_warmup(0) == 0.


def test_no_average_before_fit():
    cb = EMACB()
    assert cb.state_dict() == {}
    with pytest.raises(RuntimeError, match='made when fit starts'): cb.model


class StopAt(Callback):
    "Interrupt the fit in the middle of epoch `epoch`."
    def __init__(self, epoch): self.epoch = epoch
    def after_batch(self, learn):
        if learn.training and learn.epoch == self.epoch and learn.iter == 3: raise CancelFitException()


def test_resume_from_checkpointcb_is_exact(tmp_path):
    straight_cb = EMACB(decay=0.95, power=3/4)
    learner([straight_cb]).fit(5)
    # a run that checkpoints every epoch and is interrupted in epoch 3
    first_cb = EMACB(decay=0.95, power=3/4)
    learner([first_cb, CheckpointCB(tmp_path/'ck'), StopAt(3)]).fit(5)
    assert read_checkpoint(tmp_path/'ck')['epoch'] == 2
    assert 'EMACB' in read_checkpoint(tmp_path/'ck')['cbs']
    resumed_cb = EMACB(decay=0.95, power=3/4)
    resumed = learner([resumed_cb], seed=7)
    info = load_checkpoint(resumed, tmp_path/'ck')
    resumed.fit(5, start_epoch=info['epoch'] + 1)
    a, b = straight_cb.ema.state_dict(), resumed_cb.ema.state_dict()
    assert sorted(a) == sorted(b)
    for k in a: assert torch.equal(a[k], b[k]), k
    assert int(b['n_averaged']) == 5 * len(resumed.dls.train)


def test_state_loaded_before_fit_is_applied():
    cb = EMACB(decay=0.9)
    learner([cb]).fit(1)
    sd = cb.state_dict()
    cb2 = EMACB(decay=0.9)
    cb2.load_state_dict(sd)                       # no average yet: kept until fit makes one
    learn2 = learner([cb2])
    learn2.fit(1, train=False)
    for k, v in sd['ema'].items(): assert torch.equal(cb2.ema.state_dict()[k], v)


def test_second_fit_continues_the_average():
    cb = EMACB(decay=0.9)
    learn = learner([cb])
    learn.fit(1)
    ema, n = cb.ema, int(cb.ema.n_averaged)
    learn.fit(1)
    assert cb.ema is ema and int(cb.ema.n_averaged) == 2 * n
