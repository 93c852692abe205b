"""Seconds for one epoch (train + validation) on Fashion-MNIST: the Learner against a hand-written loop.

Both use the same model, data (`DataLoaders.fashion`, bs=256), optimizer (SGD with momentum) and seed, on the
CPU, and compute the same things: the loss, backward, step, zero_grad on every training batch, and the mean
loss and accuracy of each phase. The Learner does it with TrainCB, DeviceCB, MetricsCB(accuracy) and
ProgressCB. The two run alternately, `--repeats` times each, and the medians are compared. Both end with
bitwise the same weights (checked), so the difference is pure overhead: it is also reported in microseconds
per batch. `--model tiny` (a linear layer) makes the model's own time small, so the overhead shows;
`--model cnn` (the default) is the small CNN. Times are CPU time of this process (`time.process_time`),
which other processes on a shared machine disturb less than wall time.

    python bench/learner_overhead.py [--model cnn|tiny] [--n_train 60000] [--n_valid 10000] [--repeats 3] [--threads 1] [--profile]
Target: learner / hand <= 1.05 on the CNN.
"""
import argparse, time, statistics, cProfile, pstats, io
from functools import partial
import torch
from torch import nn
import torch.nn.functional as F
from torcheval.metrics import MulticlassAccuracy
from miniai.core import set_seed
from miniai.datasets import DataLoaders
from miniai.learner import Learner, TrainCB, DeviceCB, MetricsCB, ProgressCB
from miniai.conv import conv

LR, MOM, DEVICE = 0.1, 0.9, torch.device('cpu')

def cnn():
    return nn.Sequential(conv(1, 8), conv(8, 16), conv(16, 32), conv(32, 10, act=False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())

def tiny(): return nn.Sequential(nn.Flatten(), nn.Linear(28*28, 10))
MODEL = cnn
clock = time.process_time

def learner_epoch(dls):
    set_seed(0)
    learn = Learner(MODEL(), dls, F.cross_entropy, lr=LR, opt_func=partial(torch.optim.SGD, momentum=MOM),
                    cbs=[TrainCB(), DeviceCB(DEVICE), MetricsCB(accuracy=MulticlassAccuracy()), ProgressCB()])
    t = clock()
    learn.fit(1)
    return clock() - t, learn.model, learn.history

def hand_epoch(dls):
    set_seed(0)
    model = MODEL().to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOM)
    t = clock()
    hist = []
    for train, dl in ((True, dls.train), (False, dls.valid)):
        model.train(train)
        if train: dl.sampler.set_epoch(0)
        tot_loss, correct, n = 0., 0, 0
        with torch.set_grad_enabled(train):
            for xb, yb in dl:
                xb, yb = xb.to(DEVICE), yb.to(DEVICE)
                preds = model(xb)
                loss = F.cross_entropy(preds, yb)
                if train:
                    loss.backward(); opt.step(); opt.zero_grad()
                tot_loss += loss.item() * len(xb)
                correct += (preds.argmax(1) == yb).sum().item()
                n += len(xb)
        hist.append({'accuracy': correct / n, 'loss': tot_loss / n})
        print(f'{"train" if train else "eval":>5}  loss {tot_loss/n:.3f}  accuracy {correct/n:.3f}', flush=True)
    return clock() - t, model, hist

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--model', choices=['cnn', 'tiny'], default='cnn')
    p.add_argument('--wall', action='store_true', help='wall time instead of CPU time')
    p.add_argument('--n_train', type=int, default=60000)
    p.add_argument('--n_valid', type=int, default=10000)
    p.add_argument('--bs', type=int, default=256)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=1, help='torch threads (1: steadier on a shared machine)')
    p.add_argument('--profile', action='store_true', help='also profile one Learner epoch (cProfile, top functions)')
    a = p.parse_args()
    global MODEL, clock
    MODEL = {'cnn': cnn, 'tiny': tiny}[a.model]
    if a.wall: clock = time.perf_counter
    torch.set_num_threads(a.threads)
    dls = DataLoaders.fashion(a.bs, n_train=a.n_train, n_valid=a.n_valid, seed=0)
    learner_epoch(dls); hand_epoch(dls)      # warm-up: first-call costs (allocator, kernels) paid by neither
    res = {'learner': [], 'hand': []}
    for r in range(a.repeats):               # alternate the order so a change in machine load hits both
        order = (('learner', learner_epoch), ('hand', hand_epoch))
        for k, f in (order if r % 2 == 0 else order[::-1]):
            t, model, hist = f(dls)
            res[k].append(t)
            if k == 'learner': w_l = [p.detach().clone() for p in model.parameters()]
            else: w_h = [p.detach().clone() for p in model.parameters()]
        same = all(torch.equal(x, y) for x, y in zip(w_l, w_h))
        assert same, 'the Learner and the hand-written loop ended with different weights: not the same computation'
    med = {k: statistics.median(v) for k, v in res.items()}
    n_batches = len(dls.train) + len(dls.valid)
    print(f'model={a.model} n_train={a.n_train} n_valid={a.n_valid} bs={a.bs} threads={a.threads} repeats={a.repeats}; same final weights: {same}')
    unit = 'wall' if a.wall else 'CPU'
    for k in ('hand', 'learner'): print(f'{k:8s} {med[k]:7.3f} s {unit}   (runs: {", ".join(f"{v:.3f}" for v in res[k])})')
    print(f'learner / hand = {med["learner"]/med["hand"]:.3f}x   (target <= 1.05x); '
          f'added {(med["learner"] - med["hand"]) / n_batches * 1e6:.0f} us per batch ({n_batches} batches)')
    best = {k: min(v) for k, v in res.items()}   # the fastest run: least disturbed by other processes
    print(f'fastest runs: learner / hand = {best["learner"]/best["hand"]:.3f}x, '
          f'added {(best["learner"] - best["hand"]) / n_batches * 1e6:.0f} us per batch')
    if a.profile:
        pr = cProfile.Profile()
        pr.enable(); learner_epoch(dls); pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats('tottime').print_stats(25)
        print(s.getvalue())

if __name__ == '__main__': main()
