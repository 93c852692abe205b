"""Fault injection for checkpoints: SIGKILL during saves, Ctrl-C (SIGINT) during `fit` with `CheckpointCB`.

Each trial forks a process (cheap: torch is already imported) that saves or trains, and kills it at a random
moment. `MINIAI_FAULT_TRIALS` sets the number of trials (default 40 kills, 12 interrupts); the fault table in
nbs/faults.md was made with larger counts of these same tests. Unix only (fork and signals).
"""
import os, random, select, signal, sys, time, warnings
from functools import partial
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from miniai.core import set_seed
from miniai.datasets import DataLoaders, TensorLoader
from miniai.learner import Learner, TrainCB, Callback
from miniai.accel import CheckpointCB, ckpt_path, save_checkpoint, read_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, 'fork') or sys.platform == 'darwin', reason='needs fork and signals (Linux)')
N = int(os.environ.get('MINIAI_FAULT_TRIALS', 0))


def fork(child):
    "Run `child(write_fd)` in a forked process; returns (pid, read_fd)."
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never return into pytest
        code = 0
        try:
            os.close(r); child(w)
        except BaseException: code = 1
        finally: os._exit(code)
    os.close(w)
    return pid, r

def drain(fd) -> list[str]:
    "Everything the (dead) child wrote, as lines."
    out = b''
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk: break
        out += chunk
    os.close(fd)
    return out.decode().split()

def tmp_files(d): return sorted(p.name for p in d.iterdir() if p.name.endswith('.tmp'))


# ---------------------------------------------------------------- 1. SIGKILL during save_checkpoint
class Big(nn.Module):
    "About 0.8M parameters: with Adam's two buffers a checkpoint is about 10 MB, so a save takes a while."
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(1024, 512), nn.Linear(512, 512)
    def forward(self, x): return self.b(self.a(x))

def stamped_learner():
    "A learner whose every weight and Adam buffer can be set to one number, so a mixed save would show."
    model = Big()
    learn = Learner(model, None, F.mse_loss, lr=1e-3, opt_func=torch.optim.Adam)
    learn.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1024)).sum().backward(); learn.opt.step()   # create Adam's state
    return learn

def stamp(learn, k:int):
    with torch.no_grad():
        for p in learn.model.parameters():
            p.fill_(k)
            for v in learn.opt.state[p].values():
                if v.ndim: v.fill_(k)

def check_stamp(ck, k:int):
    assert ck['epoch'] == k, (ck['epoch'], k)
    for name, t in ck['model'].items(): assert (t == k).all(), f'{name} is not all {k}: a mixed checkpoint'
    for s in ck['opt']['state'].values(): assert (s['exp_avg'] == k).all() and (s['exp_avg_sq'] == k).all()

def kill_during_saves(tmp_path, trials:int, seed:int=0) -> dict:
    "SIGKILL a process that saves in a loop, `trials` times; after each kill check the checkpoint, then save again."
    rng, learn, path = random.Random(seed), stamped_learner(), tmp_path/'run'
    stamp(learn, 0)
    t = time.perf_counter(); save_checkpoint(learn, path, epoch=0); save_s = time.perf_counter() - t
    stats = dict(trials=trials, loaded=0, last_done=0, in_flight_committed=0, fallback_warnings=0, tmp_after_kill=0,
                 tmp_after_next_save=0, save_s=save_s, mid_save=0)
    k = 0
    for _ in range(trials):
        def child(w, k0=k):
            for j in range(k0 + 1, k0 + 10**6):
                stamp(learn, j)
                os.write(w, f'start{j} '.encode())
                save_checkpoint(learn, path, epoch=j)
                os.write(w, f'done{j} '.encode())
        pid, r = fork(child)
        time.sleep(rng.uniform(0, 3 * save_s))          # somewhere in the first few saves
        os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
        lines = drain(r)
        done = [int(s[4:]) for s in lines if s.startswith('done')]
        last_done = done[-1] if done else k
        stats['mid_save'] += bool(lines) and lines[-1].startswith('start')   # killed inside a save
        stats['tmp_after_kill'] += bool(tmp_files(tmp_path))
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter('always')
            ck = read_checkpoint(path)                   # must not raise
        stats['fallback_warnings'] += len(ws)
        stats['loaded'] += 1
        assert ck['epoch'] in (last_done, last_done + 1), (ck['epoch'], last_done)   # the newest, or the one in flight
        check_stamp(ck, ck['epoch'])
        stats['last_done' if ck['epoch'] == last_done else 'in_flight_committed'] += 1
        k = ck['epoch'] + 1
        stamp(learn, k); save_checkpoint(learn, path, epoch=k)   # the next successful save...
        stats['tmp_after_next_save'] += bool(tmp_files(tmp_path))   # ...leaves no temporary file
        assert not tmp_files(tmp_path), tmp_files(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ['run.1.safetensors', 'run.safetensors']
    return stats

def test_sigkill_during_save(tmp_path):
    stats = kill_during_saves(tmp_path, N or 40)
    print(stats)
    assert stats['loaded'] == stats['trials'] and stats['fallback_warnings'] == 0
    assert stats['mid_save'] > 0, 'no kill landed inside a save: the test did not test anything'


# ---------------------------------------------------------------- 2. Ctrl-C during fit with CheckpointCB
def line_dls(seed=0):
    g = torch.Generator().manual_seed(seed)
    def mk(n):
        x = torch.randn(n, 1, generator=g)
        return x, 2*x + 3 + 0.1*torch.randn(n, 1, generator=g)
    return DataLoaders(TensorLoader(*mk(128), batch_size=16, shuffle=True, seed=seed, mean=None),
                       TensorLoader(*mk(32), batch_size=16, mean=None))

class Slow(Callback):
    def after_batch(self, learn): time.sleep(0.004)

def line_learner(cbs=()):
    set_seed(0)
    return Learner(nn.Linear(1, 1), line_dls(), F.mse_loss, lr=0.05, cbs=[TrainCB(), *cbs],
                   opt_func=partial(torch.optim.SGD, momentum=0.9))

EPOCHS = 5

def ctrl_c_during_fit(tmp_path, trials:int, seed:int=1) -> dict:
    "SIGINT a process that trains with CheckpointCB at a random moment; resume from its checkpoint and compare."
    straight = line_learner(); straight.fit(EPOCHS)
    want = {k: v.clone() for k, v in straight.model.state_dict().items()}
    t = time.perf_counter(); line_learner([Slow()]).fit(EPOCHS); fit_s = time.perf_counter() - t
    rng = random.Random(seed)
    stats = dict(trials=trials, interrupted=0, no_checkpoint_yet=0, resumed_exact=0, finished=0, interrupted_file=0, fit_s=fit_s)
    for i in range(trials):
        d = tmp_path/f'trial{i}'; d.mkdir()
        def child(w):
            signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal (a background job ignores SIGINT)
            learn = line_learner([Slow(), CheckpointCB(d/'run')])
            try: learn.fit(EPOCHS)
            except KeyboardInterrupt: os.write(w, b'interrupted '); raise
            os.write(w, b'finished ')
        pid, r = fork(child)
        time.sleep(rng.uniform(0, 1.1 * fit_s))
        os.kill(pid, signal.SIGINT); os.waitpid(pid, 0)
        said = drain(r)
        stats['interrupted'] += 'interrupted' in said
        assert not tmp_files(d), tmp_files(d)
        stats['interrupted_file'] += ckpt_path(d/'run_interrupted').exists()
        if not ckpt_path(d/'run').exists():
            stats['no_checkpoint_yet'] += 1; continue
        resumed = line_learner()
        torch.manual_seed(1234)                      # scramble: the checkpoint must restore the RNGs
        info = resumed.load(d/'run')
        if info['epoch'] == EPOCHS - 1: stats['finished'] += 1
        resumed.fit(EPOCHS, start_epoch=info['epoch'] + 1)
        for k, v in want.items(): assert torch.equal(resumed.model.state_dict()[k], v), (i, info['epoch'], k)
        stats['resumed_exact'] += 1
    return stats

def test_ctrl_c_during_fit(tmp_path):
    stats = ctrl_c_during_fit(tmp_path, N or 12)
    print(stats)
    assert stats['resumed_exact'] + stats['no_checkpoint_yet'] == stats['trials']
    assert stats['resumed_exact'] > 0 and stats['interrupted'] > stats['trials'] // 2
