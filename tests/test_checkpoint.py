"""Checkpoints: bad input gives clear errors, interrupted saves keep the previous checkpoint, resuming is exact."""
import json, os, shutil
from functools import partial
import pytest
import torch
from torch import nn
import torch.nn.functional as F
import safetensors.torch
from miniai.core import set_seed
from miniai.datasets import DataLoaders, TensorLoader
from miniai.learner import Learner, TrainCB, Callback
from miniai.accel import (CheckpointError, CheckpointCB, ckpt_paths, save_checkpoint, load_checkpoint,
                          read_checkpoint)


def dls(seed=0):
    g = torch.Generator().manual_seed(seed)
    def mk(n):
        x = torch.randn(n, 1, generator=g)
        return x, 2*x + 3 + 0.1*torch.randn(n, 1, generator=g)
    return DataLoaders(TensorLoader(*mk(128), batch_size=16, shuffle=True, seed=seed, mean=None),
                       TensorLoader(*mk(32), batch_size=16, mean=None))

def learner(model=None, opt_func=partial(torch.optim.SGD, momentum=0.9), cbs=()):
    set_seed(0)
    return Learner(model or nn.Linear(1, 1), dls(), F.mse_loss, lr=0.05, cbs=[TrainCB(), *cbs], opt_func=opt_func)

@pytest.fixture
def ckpt(tmp_path):
    learn = learner()
    learn.fit(2)
    learn.save(tmp_path/'ck')
    return tmp_path/'ck', learn

def snapshot(path): return [p.read_bytes() for p in ckpt_paths(path)]


def test_round_trip_and_suffixes(ckpt):
    path, learn = ckpt
    for p in (path, path.with_name('ck.safetensors'), path.with_name('ck.json')):
        fresh = learner()
        info = fresh.load(p)
        assert info['epoch'] == 1
        for k, v in learn.model.state_dict().items(): assert torch.equal(fresh.model.state_dict()[k], v)
        assert torch.equal(fresh.opt.state_dict()['state'][0]['momentum_buffer'],
                           learn.opt.state_dict()['state'][0]['momentum_buffer'])


def test_resume_is_exact(tmp_path):
    straight = learner()
    straight.fit(4)
    first = learner()
    first.fit(2)
    first.save(tmp_path/'half')
    resumed = learner(nn.Linear(1, 1))
    torch.manual_seed(99)                      # scramble the RNGs: the checkpoint restores them
    info = resumed.load(tmp_path/'half')
    resumed.fit(4, start_epoch=info['epoch'] + 1)
    for k, v in straight.model.state_dict().items(): assert torch.equal(resumed.model.state_dict()[k], v)


def test_wrong_architecture(ckpt):
    path, _ = ckpt
    mlp = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))
    with pytest.raises(CheckpointError) as e: learner(mlp).load(path)
    msg = str(e.value)
    assert 'does not fit this model' in msg and 'saved from a Linear, this is a Sequential' in msg
    assert 'missing from the checkpoint: 0.weight, 0.bias, 2.weight, 2.bias' in msg
    assert 'unexpected in the checkpoint: weight, bias' in msg
    with pytest.raises(CheckpointError, match=r'weight: \(1, 1\) in the checkpoint, \(3, 1\) in the model'):
        learner(nn.Linear(1, 3)).load(path)
    # nothing was changed by the failed load
    m = nn.Linear(1, 3); before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(CheckpointError): learner(m).load(path)
    for k, v in before.items(): assert torch.equal(m.state_dict()[k], v)


def test_wrong_optimizer(ckpt):
    path, _ = ckpt
    with pytest.raises(CheckpointError, match='SGD optimizer but the learner uses Adam'):
        learner(opt_func=torch.optim.Adam).load(path)
    learner(opt_func=torch.optim.Adam).load(path, with_opt=False)   # the weights alone are fine


@pytest.mark.parametrize('keep', [0, 5, 8, 40, -1])
def test_truncated_safetensors(ckpt, keep):
    path, _ = ckpt
    st, _ = ckpt_paths(path)
    raw = st.read_bytes()
    st.write_bytes(raw[:keep] if keep >= 0 else raw[:-1])
    with pytest.raises(CheckpointError) as e: read_checkpoint(path)
    assert str(st) in str(e.value) and ('truncated' in str(e.value) or 'not a safetensors file' in str(e.value))


def test_truncated_json(ckpt):
    path, _ = ckpt
    _, js = ckpt_paths(path)
    js.write_text(js.read_text()[:len(js.read_text()) // 2])
    with pytest.raises(CheckpointError, match=r'ck\.json is truncated or not valid JSON'): read_checkpoint(path)


@pytest.mark.parametrize('part', [0, 1])
def test_missing_part(ckpt, part):
    path, _ = ckpt
    gone = ckpt_paths(path)[part]
    gone.unlink()
    with pytest.raises(CheckpointError) as e: read_checkpoint(path)
    assert f'{gone} is missing' in str(e.value) and 'copy or restore both' in str(e.value)
    with pytest.raises(CheckpointError, match='No checkpoint at'): read_checkpoint(path.with_name('nope'))


def test_not_a_checkpoint(tmp_path, ckpt):
    path, learn = ckpt
    st, js = ckpt_paths(tmp_path/'plain')
    safetensors.torch.save_file(learn.model.state_dict(), st)   # a weights file, not a checkpoint
    js.write_text(json.dumps({'lr': 0.1}))
    with pytest.raises(CheckpointError, match='is not a miniai checkpoint'): read_checkpoint(tmp_path/'plain')
    js.write_text('[1, 2, 3]')
    with pytest.raises(CheckpointError, match='is not a miniai checkpoint'): read_checkpoint(tmp_path/'plain')
    # a right json with a file that is not safetensors at all
    st2, js2 = ckpt_paths(tmp_path/'text')
    shutil.copy(ckpt_paths(path)[1], js2)
    st2.write_bytes(b'hello, this is not a tensor file' * 4)
    with pytest.raises(CheckpointError, match='text.safetensors is not a safetensors file'): read_checkpoint(tmp_path/'text')


def test_parts_from_different_saves(ckpt):
    path, learn = ckpt
    old = snapshot(path)
    learn.fit(1)
    learn.save(path)
    ckpt_paths(path)[1].write_bytes(old[1])    # an old json next to a new safetensors
    with pytest.raises(CheckpointError, match='come from different saves'): read_checkpoint(path)


class Boom(KeyboardInterrupt): pass

def test_interrupted_json_write_keeps_previous(ckpt, monkeypatch):
    path, learn = ckpt
    before = snapshot(path)
    learn.fit(1)
    def half_dump(obj, f, **kw):
        f.write(json.dumps(obj)[:100])
        raise Boom()
    monkeypatch.setattr(json, 'dump', half_dump)
    with pytest.raises(Boom): learn.save(path)
    monkeypatch.undo()
    assert snapshot(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ['ck.json', 'ck.safetensors']   # no temp files left
    assert read_checkpoint(path)['epoch'] == 1


def test_interrupted_safetensors_write_keeps_previous(ckpt, monkeypatch):
    path, learn = ckpt
    before = snapshot(path)
    learn.fit(1)
    real_fsync = os.fsync
    def fsync(fd):   # the safetensors part is complete in its temp file, then the process is interrupted
        raise Boom()
    monkeypatch.setattr(os, 'fsync', fsync)
    with pytest.raises(Boom): learn.save(path)
    monkeypatch.setattr(os, 'fsync', real_fsync)
    assert snapshot(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ['ck.json', 'ck.safetensors']
    fresh = learner()
    assert fresh.load(path)['epoch'] == 1


def test_checkpoint_cb_on_keyboard_interrupt(tmp_path):
    class CtrlC(Callback):
        def after_batch(self, learn):
            if learn.epoch == 2 and learn.iter == 2: raise KeyboardInterrupt()
    cb = CheckpointCB(tmp_path/'run')
    learn = learner(cbs=[cb, CtrlC()])
    with pytest.raises(KeyboardInterrupt): learn.fit(5)
    assert cb.saved == [0, 1]
    assert read_checkpoint(tmp_path/'run')['epoch'] == 1
    ck = read_checkpoint(tmp_path/'run_interrupted')
    assert ck['epoch'] == 1 and ck['extra'] == {'interrupted_at': {'epoch': 2, 'iter': 2}}
    for k, v in learn.model.state_dict().items(): assert torch.equal(ck['model'][k], v)


def test_checkpoint_cb_every_and_train_only(tmp_path):
    cb = CheckpointCB(tmp_path/'run', every=2)
    learner(cbs=[cb]).fit(5, valid=False)
    assert cb.saved == [1, 3, 4]             # every 2 epochs, and the last one
    assert not ckpt_paths(tmp_path/'run_interrupted')[0].exists()
