"""Checkpoints: bad input gives clear errors, interrupted saves keep the previous checkpoint, resuming is exact.

Kills at random moments of a save are in test_faults_checkpoint.py."""
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
from miniai.accel import (CheckpointError, CheckpointCB, ckpt_path, save_checkpoint, load_checkpoint,
                          read_checkpoint, CKPT_FORMAT, _encode)


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



def test_round_trip_and_suffixes(ckpt):
    path, learn = ckpt
    for p in (path, path.with_name('ck.safetensors'), str(path)):
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


@pytest.mark.parametrize('cut', [0, 5, 8, 40, -1])
def test_truncated_file(ckpt, cut):
    path, _ = ckpt
    st = ckpt_path(path)
    raw = st.read_bytes()
    st.write_bytes(raw[:cut] if cut >= 0 else raw[:-1])
    with pytest.raises(CheckpointError) as e: read_checkpoint(path)
    assert str(st) in str(e.value) and ('truncated' in str(e.value) or 'not a safetensors file' in str(e.value))


def test_missing(ckpt):
    path, _ = ckpt
    ckpt_path(path).unlink()
    with pytest.raises(CheckpointError, match='No checkpoint at'): read_checkpoint(path)
    with pytest.raises(CheckpointError, match='No checkpoint at'): read_checkpoint(path.with_name('nope'))


def test_not_a_checkpoint(tmp_path, ckpt):
    path, learn = ckpt
    safetensors.torch.save_file(learn.model.state_dict(), tmp_path/'plain.safetensors')   # a weights file, not a checkpoint
    with pytest.raises(CheckpointError, match='is a safetensors file but not a miniai checkpoint'): read_checkpoint(tmp_path/'plain')
    (tmp_path/'text.safetensors').write_bytes(b'hello, this is not a tensor file' * 4)
    with pytest.raises(CheckpointError, match='text.safetensors is not a safetensors file'): read_checkpoint(tmp_path/'text')
    meta = {'format': CKPT_FORMAT, 'miniai': json.dumps({'format': CKPT_FORMAT, 'epoch': 1})}
    safetensors.torch.save_file({'x': torch.zeros(1)}, tmp_path/'edited.safetensors', metadata=meta)
    with pytest.raises(CheckpointError, match=r"lacks \['id', 'model'"): read_checkpoint(tmp_path/'edited')


def test_newer_version(tmp_path, ckpt):
    path, _ = ckpt
    with safetensors.safe_open(ckpt_path(path), 'pt') as f: meta, ts = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    d = json.loads(meta['miniai']); d['version'] = 99; meta['miniai'] = json.dumps(d)
    with pytest.raises(CheckpointError, match='do not match the checksum'):   # an edited file no longer matches its checksum
        safetensors.torch.save_file(ts, tmp_path/'future.safetensors', metadata=meta); read_checkpoint(tmp_path/'future')
    del meta['sha256']
    safetensors.torch.save_file(ts, tmp_path/'future.safetensors', metadata=meta)
    with pytest.raises(CheckpointError, match='format version 99; this miniai reads up to 2: upgrade miniai'):
        read_checkpoint(tmp_path/'future')


def write_v1(learn, path):
    "A checkpoint in the version-1 format (a .safetensors + .json pair), as the first miniai release wrote them."
    save_checkpoint(learn, path.with_name('src'), keep=1)
    ck = read_checkpoint(path.with_name('src')); ck.pop('file'); ck['version'] = 1
    tensors = {}
    enc = _encode(ck, '', tensors, set())
    (path.with_name(path.name + '.safetensors')).write_bytes(
        safetensors.torch.save(tensors, metadata={'format': CKPT_FORMAT, 'id': ck['id']}))
    (path.with_name(path.name + '.json')).write_text(json.dumps(enc))
    return ck


def test_reads_version_1(tmp_path, ckpt):
    _, learn = ckpt
    ck = write_v1(learn, tmp_path/'old')
    fresh = learner()
    assert fresh.load(tmp_path/'old')['epoch'] == ck['epoch'] == 1
    for k, v in learn.model.state_dict().items(): assert torch.equal(fresh.model.state_dict()[k], v)
    (tmp_path/'old.json').write_text(json.dumps(json.loads((tmp_path/'old.json').read_text()) | {'id': 'x'}))
    with pytest.raises(CheckpointError, match='come from different saves'): read_checkpoint(tmp_path/'old')
    (tmp_path/'old.json').unlink()
    with pytest.raises(CheckpointError, match='old.json, is missing'): read_checkpoint(tmp_path/'old')
    # a new save over a version-1 checkpoint replaces both files by one
    write_v1(learn, tmp_path/'old')
    learn.save(tmp_path/'old')
    assert not (tmp_path/'old.json').exists() and read_checkpoint(tmp_path/'old')['version'] == 2


def test_keep_and_fallback(ckpt):
    path, learn = ckpt
    first = read_checkpoint(path)['id']
    learn.fit(1); learn.save(path, epoch=2, keep=3)
    learn.fit(1); learn.save(path, epoch=3, keep=3)
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ['ck.1.safetensors', 'ck.2.safetensors', 'ck.safetensors'], names
    assert read_checkpoint(path.with_name('ck.2'))['id'] == first
    assert [read_checkpoint(ckpt_path(path, i))['epoch'] for i in range(3)] == [3, 2, 1]
    ckpt_path(path).write_bytes(ckpt_path(path).read_bytes()[:-3])              # the newest is damaged
    with pytest.warns(UserWarning, match=r'ck.safetensors could not be read .*Loaded the previous checkpoint, ck.1.safetensors \(epoch 2\)'):
        assert read_checkpoint(path)['epoch'] == 2
    ckpt_path(path, 1).write_bytes(b'junk')                                      # and the one before too
    with pytest.warns(UserWarning, match='ck.2.safetensors'): assert read_checkpoint(path)['epoch'] == 1
    with pytest.raises(CheckpointError, match='truncated'): read_checkpoint(path, fallback=False)
    learn.save(path, keep=1)
    assert sorted(p.name for p in path.parent.iterdir()) == ['ck.safetensors']
    with pytest.raises(ValueError, match='keep >= 1'): learn.save(path, keep=0)


class Boom(KeyboardInterrupt): pass

def test_interrupted_write_keeps_previous(ckpt, monkeypatch):
    path, learn = ckpt
    before = ckpt_path(path).read_bytes()
    learn.fit(1)
    def fsync(fd): raise Boom()   # the new file is complete in its temp file, then the process is interrupted
    monkeypatch.setattr(os, 'fsync', fsync)
    with pytest.raises(Boom): learn.save(path)
    monkeypatch.undo()
    assert ckpt_path(path).read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ['ck.safetensors']   # no temp files left
    assert learner().load(path)['epoch'] == 1


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
    assert not ckpt_path(tmp_path/'run_interrupted').exists()
