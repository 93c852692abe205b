"""AccelerateCB on two CPU processes (gloo) gives the weights of one process on the same global batches.

The test starts this same file under `torchrun` (`python -m torch.distributed.run --standalone
--nproc_per_node 2`) as the worker. `accelerate launch --cpu --num_processes 2` would need MPI for CPU
processes; torchrun needs nothing more, and Accelerate picks up its environment (MULTI_CPU, gloo).

Run the worker by hand with:  torchrun --standalone --nproc_per_node 2 tests/test_accel_distributed.py OUT_DIR
"""
import json, os, subprocess, sys
from functools import partial
from pathlib import Path
import pytest
import torch
from torch import nn
import torch.nn.functional as F
import safetensors.torch

N_TRAIN, N_VALID, BS, EPOCHS, LR = 256, 64, 32, 3, 0.1


def make_learner(*cbs):
    "A linear regression y = 2x + 3 on fixed data: the same model, data and batches in every process."
    from miniai.core import set_seed
    from miniai.datasets import DataLoaders, TensorLoader
    from miniai.learner import Learner, TrainCB
    g = torch.Generator().manual_seed(0)
    def mk(n):
        x = torch.randn(n, 1, generator=g)
        return x, 2*x + 3 + 0.1*torch.randn(n, 1, generator=g)
    dls = DataLoaders(TensorLoader(*mk(N_TRAIN), batch_size=BS, shuffle=True, seed=0, mean=None),
                      TensorLoader(*mk(N_VALID), batch_size=BS, mean=None))
    set_seed(0)
    return Learner(nn.Linear(1, 1), dls, F.mse_loss, lr=LR, cbs=[TrainCB(), *cbs],
                   opt_func=partial(torch.optim.SGD, momentum=0.9))


def worker(out):
    "One process of the distributed run: train, then write this rank's weights and what it saw."
    from miniai.learner import Callback, MetricsCB
    from miniai.accel import AccelerateCB
    class SeenCB(Callback):
        def before_fit(self, learn): self.train_bs, self.valid_bs = set(), set()
        def after_batch(self, learn): (self.train_bs if learn.training else self.valid_bs).add(len(learn.batch[0]))
    seen, acc_cb, metrics = SeenCB(), AccelerateCB(cpu=True), MetricsCB()
    metrics._log = lambda d: None
    learn = make_learner(acc_cb, seen, metrics)
    learn.fit(EPOCHS)
    acc = acc_cb.acc
    out = Path(out)
    rank = acc.process_index
    sd = {k: v.contiguous() for k, v in learn.model.module.state_dict().items()} if hasattr(learn.model, 'module') \
         else learn.model.state_dict()
    safetensors.torch.save_file(sd, out/f'rank{rank}.safetensors')
    (out/f'rank{rank}.json').write_text(json.dumps(dict(
        world=acc.num_processes, distributed=str(acc.distributed_type), wrapped=type(learn.model).__name__,
        train_bs=sorted(seen.train_bs), valid_bs=sorted(seen.valid_bs), history=learn.history)))
    learn.save(out/'ckpt')   # only rank 0 writes


@pytest.mark.skipif(not torch.distributed.is_available(), reason='torch.distributed is not available')
def test_two_processes_match_one(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MINIAI_DEVICE': 'cpu'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', __file__, str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    infos = [json.loads((tmp_path/f'rank{i}.json').read_text()) for i in range(2)]
    for info in infos:
        assert info['world'] == 2 and info['distributed'] == 'DistributedType.MULTI_CPU'
        assert info['wrapped'] == 'DistributedDataParallel'
        assert info['train_bs'] == [BS // 2]   # each process trained on half of every batch...
        assert info['valid_bs'] == [BS]        # ...and validated on whole batches
    ws = [safetensors.torch.load_file(tmp_path/f'rank{i}.safetensors') for i in range(2)]
    for k in ws[0]: assert torch.equal(ws[0][k], ws[1][k]), f'{k} differs between the processes'

    learn = make_learner()   # one process, the same global batches
    learn.fit(EPOCHS)
    for k, v in learn.model.state_dict().items():
        torch.testing.assert_close(ws[0][k], v, rtol=1e-5, atol=1e-6)
    assert abs(learn.model.weight.item() - 2) < 0.1   # and it learned the line

    # the same validation loss everywhere, from the full validation set
    evals = [[h for h in info['history'] if h['train'] == 'eval'] for info in infos]
    assert len(evals[0]) == EPOCHS and evals[0] == evals[1]
    # the checkpoint, written by rank 0 only, holds the unwrapped model's weights
    from miniai.accel import read_checkpoint
    ck = read_checkpoint(tmp_path/'ckpt')
    assert set(ck['model']) == {'weight', 'bias'}
    for k in ws[0]: assert torch.equal(ck['model'][k], ws[0][k])


if __name__ == '__main__': worker(sys.argv[1])
