"""The Learner's fast paths on the CPU, where compiling takes longer than the notebook can afford.

`CompileCB` is tested with the `aot_eager` backend: it captures the forward and the backward graphs as
`inductor` does, without generating code (inductor takes about 2 minutes for a tiny model on one CPU
thread here; on a GPU run it is the default).

    python -m pytest -q -p no:cacheprovider tests/test_learner_fast.py
"""
import torch
from torch import nn
import torch.nn.functional as F
from miniai.core import set_seed
from miniai.datasets import DataLoaders, TensorLoader
from miniai.learner import TrainLearner, DeviceCB, ChannelsLastCB, CompileCB, fused_adamw


def tiny_cnn(): return nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4*4*4, 3))

def dls():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (96, 8, 8), dtype=torch.uint8, generator=g), torch.randint(0, 3, (96,), generator=g)
    return DataLoaders(TensorLoader(x, y, 32, shuffle=True, seed=0), TensorLoader(x, y, 48))

def train(cbs=(), opt_func=fused_adamw):
    set_seed(0)
    learn = TrainLearner(tiny_cnn(), dls(), F.cross_entropy, lr=1e-2, opt_func=opt_func, cbs=[DeviceCB(), *cbs])
    learn.fit(2)
    return learn


def test_all_fast_paths_together_match_the_plain_run():
    plain = train(opt_func=torch.optim.AdamW)
    fast = train([ChannelsLastCB(), CompileCB(backend='aot_eager')])
    assert fast.opt.defaults['fused'] and fast.model._compiled_call_impl is not None
    for a, b in zip(plain.model.parameters(), fast.model.parameters()): torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert plain.batch_losses and len(plain.batch_losses) == len(fast.batch_losses)


def test_compiled_model_state_dict_loads_into_a_plain_one():
    learn = train([CompileCB(backend='aot_eager')])
    sd = learn.model.state_dict()
    assert list(sd) == list(tiny_cnn().state_dict())
    m = tiny_cnn(); m.load_state_dict(sd)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad(): torch.testing.assert_close(m(x), learn.model(x))


def test_compile_cb_compiles_once_across_fits():
    learn = train([CompileCB(backend='eager')])
    impl = learn.model._compiled_call_impl
    learn.fit(1, cbs=CompileCB(backend='eager'))
    assert learn.model._compiled_call_impl is impl
