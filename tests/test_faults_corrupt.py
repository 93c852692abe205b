"""Fault injection for checkpoints at rest: random truncations and flipped bytes, and checkpoints from other architectures.

Every damaged file must give a `CheckpointError` that names it (or, when a previous checkpoint was kept, load
that one with a warning); never another exception, and never wrong weights. `MINIAI_FAULT_TRIALS` scales the
number of random damages (nbs/faults.md was made with larger counts).
"""
import os, random, warnings
from functools import partial
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from miniai.learner import Learner
from miniai.accel import CheckpointError, ckpt_path, read_checkpoint, save_checkpoint

N = int(os.environ.get('MINIAI_FAULT_TRIALS', 0))

def learner(model):
    learn = Learner(model, None, F.mse_loss, lr=1e-3, opt_func=torch.optim.Adam)
    learn.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, *getattr(model, 'in_shape', (8,)))).sum().backward(); learn.opt.step()
    return learn

def mlp(): torch.manual_seed(0); return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))

def damage(raw:bytes, rng) -> tuple[str, bytes]:
    kind = rng.choice(['truncate', 'flip', 'zero-block'])
    if kind == 'truncate': return kind, raw[:rng.randrange(len(raw))]
    b = bytearray(raw)
    if kind == 'flip':
        i = rng.randrange(len(b)); b[i] ^= 1 << rng.randrange(8)
    else:
        i = rng.randrange(len(b)); b[i:i+64] = bytes(len(b[i:i+64]))
    return kind, bytes(b)

def corrupt_trials(tmp_path, trials:int, seed:int=0) -> dict:
    learn, path = learner(mlp()), tmp_path/'ck'
    save_checkpoint(learn, path, epoch=1)
    good_prev = ckpt_path(path).read_bytes()
    with torch.no_grad():
        for p in learn.model.parameters(): p.add_(1)
    save_checkpoint(learn, path, epoch=2)
    good = ckpt_path(path).read_bytes()
    want = {k: v.clone() for k, v in learn.model.state_dict().items()}
    rng, stats = random.Random(seed), {}
    for _ in range(trials):
        kind, bad = damage(good, rng)
        if bad == good: continue
        ckpt_path(path).write_bytes(bad)
        try:
            ck = read_checkpoint(path, fallback=False)
            # a change that leaves the file valid can only be in JSON whitespace or padding: the contents must be intact
            assert ck['epoch'] == 2 and all(torch.equal(ck['model'][k], v) for k, v in want.items())
            outcome = 'harmless (loaded intact)'
        except CheckpointError as e:
            assert 'ck.safetensors' in str(e), str(e)
            outcome = 'CheckpointError naming the file'
            with warnings.catch_warnings(record=True) as ws:
                warnings.simplefilter('always')
                assert read_checkpoint(path)['epoch'] == 1 and len(ws) == 1   # the previous one, with one warning
        key = f'{kind}: {outcome}'
        stats[key] = stats.get(key, 0) + 1
    assert ckpt_path(path, 1).read_bytes() == good_prev
    return stats

def test_random_damage(tmp_path):
    stats = corrupt_trials(tmp_path, N or 150)
    print(stats)
    assert sum(v for k, v in stats.items() if 'CheckpointError' in k) > 0


class Conv(nn.Module):
    in_shape = (1, 8, 8)
    def __init__(self, c=4):
        super().__init__(); self.conv, self.head = nn.Conv2d(1, c, 3), nn.Linear(c, 4)
    def forward(self, x): return self.head(self.conv(x).mean((2, 3)))

OTHERS = {   # name -> (model, a phrase the error must contain)
    'wider hidden layer': (lambda: nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4)), 'different shapes: 0.weight: (32, 8) in the checkpoint, (64, 8) in the model'),
    'one more layer': (lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)), 'missing from the checkpoint: 4.weight, 4.bias'),
    'one layer fewer': (lambda: nn.Sequential(nn.Linear(8, 4)), 'unexpected in the checkpoint: 2.weight, 2.bias'),
    'another class (CNN)': (lambda: Conv(), 'it was saved from a Sequential, this is a Conv'),
    'renamed modules': (lambda: nn.Sequential(nn.ModuleDict({'a': nn.Linear(8, 32)})), 'missing from the checkpoint: 0.a.weight'),
    'no bias': (lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4, bias=False)), 'unexpected in the checkpoint: 2.bias'),
}

@pytest.mark.parametrize('name', list(OTHERS))
def test_other_architecture(tmp_path, name):
    save_checkpoint(learner(mlp()), tmp_path/'ck', epoch=0)
    mk, phrase = OTHERS[name]
    model = mk()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learn = Learner(model, None, F.mse_loss, opt_func=torch.optim.Adam)
    with pytest.raises(CheckpointError) as e: learn.load(tmp_path/'ck')
    assert 'does not fit this model' in str(e.value) and phrase in str(e.value), str(e.value)
    assert 'Build the same architecture' in str(e.value)
    for k, v in before.items(): assert torch.equal(model.state_dict()[k], v)   # a failed load changes nothing
    assert learn.opt is None
