"""The `miniai` command, each subcommand once, in quick mode: train (all three kinds), exact resume, a time limit,
sample, fid (of a model and of a folder of images), demo, and the one-line errors.

Most runs call `miniai.cli.main` in this process (an import of torch costs seconds, many times over on a busy
machine); one runs the installed entry point's code in a fresh process to check that an error prints one line
and no traceback.
"""
import os, sys, subprocess
from pathlib import Path
import pytest
import torch

os.environ['MINIAI_QUICK'] = '1'
os.environ.setdefault('OMP_NUM_THREADS', '1')
torch.set_num_threads(1)
from miniai.cli import main, find_checkpoint, CKPT, CKPT_STOPPED
from miniai.accel import read_checkpoint

SMALL = ['--n_train', '32', '--n_valid', '16', '--bs', '16']

def cli(capsys, *args):
    "Run `miniai args...` in this process; returns (exit status, stdout, stderr)."
    code = 0
    try: main([str(a) for a in args])
    except SystemExit as e: code = e.code
    out, err = capsys.readouterr()
    return code, out, err

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "A ddpm run trained for 1 epoch then resumed to 2, and one trained for 2 epochs at once."
    d = tmp_path_factory.mktemp('runs')
    main(['train', 'ddpm', '--out', str(d/'a'), '--epochs', '1'] + SMALL)
    main(['train', 'ddpm', '--out', str(d/'a'), '--epochs', '2', '--resume'])
    main(['train', 'ddpm', '--out', str(d/'b'), '--epochs', '2'] + SMALL)
    return d

def test_resume_is_exact(runs):
    a, b = read_checkpoint(runs/'a'/CKPT), read_checkpoint(runs/'b'/CKPT)
    assert a['epoch'] == b['epoch'] == 1
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in b['model'])
    assert a['history'] == b['history']

def test_train_other_kinds_and_time_limit(tmp_path, capsys):
    for kind in ('edm', 'classifier'):
        code, out, _ = cli(capsys, 'train', kind, '--out', tmp_path/kind, '--epochs', '1', *SMALL)
        assert code == 0 and 'checkpoint' in out
        assert find_checkpoint(tmp_path/kind).name == CKPT
    code, out, _ = cli(capsys, 'train', 'ddpm', '--out', tmp_path/'t', '--minutes', '1e-6', *SMALL)
    assert code == 0 and 'stopped by --minutes' in out
    assert find_checkpoint(tmp_path/'t').name == CKPT_STOPPED
    code, out, _ = cli(capsys, 'train', 'ddpm', '--out', tmp_path/'t', '--resume', '--epochs', '1')
    assert code == 0 and 'stopped within that epoch' in out
    assert find_checkpoint(tmp_path/'t').name == CKPT

def test_sample_and_fid(runs, tmp_path, capsys):
    grid, ims = tmp_path/'grid.png', tmp_path/'ims'
    code, out, _ = cli(capsys, 'sample', '--model', runs/'a', '--n', 6, '--steps', 4, '--out', grid, '--images', ims)
    assert code == 0 and grid.is_file() and len(list(ims.glob('*.png'))) == 6
    code, out, _ = cli(capsys, 'fid', '--model', runs/'a', '--n', 8, '--steps', 3, '--n_ref', 64)
    assert code == 0 and 'FID' in out and 'floor' in out
    code, out, _ = cli(capsys, 'fid', '--model', ims, '--n_ref', 64)
    assert code == 0 and f'the images in {ims}' in out

def test_demo(tmp_path, capsys):
    grid = tmp_path/'demo.png'
    code, out, _ = cli(capsys, 'demo', '--out', tmp_path/'demo', '--grid', grid, '--n', 8)
    assert code == 0 and grid.is_file() and 'FID' in out
    code, out, _ = cli(capsys, 'demo', '--out', tmp_path/'demo', '--grid', grid, '--n', 8)   # reuses the model
    assert code == 0 and 'using the trained model' in out

@pytest.mark.parametrize('args,msg', [
    (('sample', '--model', '{d}/missing'), 'no miniai checkpoint at'),
    (('sample', '--model', '{d}/a', '--sampler', 'foo'), "unknown --sampler 'foo'"),
    (('train', 'ddpm', '--out', '{d}/x', '--data', '{d}'), 'Pass a folder holding all four'),
    (('train', 'classifier', '--out', '{d}/a', '--resume'), 'holds a ddpm run'),
    (('train', 'ddpm', '--out', '{d}/a'), 'continue it with --resume'),
    (('train', 'ddpm', '--out', '{d}/a', '--resume'), 'finished all 2 epochs'),
    (('train', 'vae'), 'not available yet'),
])
def test_one_line_errors(runs, capsys, args, msg):
    code, out, err = cli(capsys, *[a.format(d=runs) for a in args])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and msg in err, err

def test_wrong_kind_error_in_a_fresh_process(runs, tmp_path):
    main(['train', 'classifier', '--out', str(runs/'cls'), '--epochs', '1'] + SMALL)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    p = subprocess.run([sys.executable, '-c', 'from miniai.cli import main; main()', 'sample', '--model', str(runs/'cls')],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and 'holds a classifier checkpoint' in p.stderr, p.stderr
    assert 'Traceback' not in p.stderr
