"""Fault injection for caches: processes killed while building one, and several processes building one at once.

`build_once` (miniai.core) is tested with a cheap build, many times; then the real Fashion-MNIST arrow cache is
built by four processes at once on an empty `MINIAI_CACHE`, after builders were killed half way in that same
cache. `MINIAI_FAULT_TRIALS` scales the number of trials (nbs/faults.md was made with larger counts).
"""
import hashlib, os, random, select, shutil, signal, subprocess, sys, textwrap, time
from pathlib import Path
import pytest
from miniai.core import build_once, tmp_path as tmp_name
import miniai.datasets as mds

unix = pytest.mark.skipif(not hasattr(os, 'fork') or sys.platform == 'darwin', reason='needs fork and signals (Linux)')
N = int(os.environ.get('MINIAI_FAULT_TRIALS', 0))
ROOT = Path(__file__).resolve().parents[1]


def leftovers(d: Path): return sorted(p.name for p in d.iterdir() if p.name.endswith('.tmp'))

def slow_build(log: Path, parts: int = 20, pause: float = 0.01):
    "A build that writes a folder of `parts` files, slowly, and records each build in `log` (one line per build)."
    def build(tmp):
        with open(log, 'a') as f: f.write(f'{os.getpid()}\n')
        tmp.mkdir()
        for i in range(parts):
            (tmp/f'part{i}').write_text(str(i)); time.sleep(pause)
    return build

def complete(p: Path): return sorted(o.name for o in p.iterdir()) == sorted(f'part{i}' for i in range(20))

def forked(f):
    pid = os.fork()
    if pid == 0:
        code = 0
        try: f()
        except BaseException: code = 1
        finally: os._exit(code)
    return pid


@unix
def test_build_once_killed_builders(tmp_path):
    "SIGKILL a builder at a random moment; the next call builds a complete result and no temporary survives."
    rng, log, trials = random.Random(0), tmp_path/'builds.log', N or 30
    stats = dict(trials=trials, killed_mid_build=0, rebuilt=0, complete=0)
    for i in range(trials):
        path = tmp_path/f'cache{i % 3}'
        if path.exists(): shutil.rmtree(path)
        pid = forked(lambda: build_once(path, slow_build(log)))
        time.sleep(rng.uniform(0, 0.3))
        os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
        stats['killed_mid_build'] += bool(leftovers(tmp_path))
        n = len(log.read_text().split()) if log.exists() else 0
        assert build_once(path, slow_build(log)) == path
        stats['rebuilt'] += len(log.read_text().split()) - n
        assert complete(path) and not leftovers(tmp_path), leftovers(tmp_path)
        stats['complete'] += 1
    print(stats)
    assert stats['complete'] == trials and stats['killed_mid_build'] > 0


@unix
def test_build_once_four_processes(tmp_path):
    "Four processes find the cache missing at the same moment: one build, all four get the complete result."
    for trial in range(N // 10 or 3):
        log, path, go = tmp_path/f'builds{trial}.log', tmp_path/f'cache{trial}', tmp_path/f'go{trial}'
        def child():
            while not go.exists(): time.sleep(0.001)
            assert build_once(path, slow_build(log)) == path and complete(path)
        pids = [forked(child) for _ in range(4)]
        go.touch()
        codes = [os.waitpid(p, 0)[1] for p in pids]
        assert codes == [0, 0, 0, 0], codes
        assert len(log.read_text().split()) == 1
        assert not leftovers(tmp_path)


def test_build_once_failure_and_invalid(tmp_path):
    def fails(tmp): tmp.write_text('half'); raise OSError('disk full')
    with pytest.raises(OSError, match='disk full'): build_once(tmp_path/'x', fails)
    assert not (tmp_path/'x').exists() and not leftovers(tmp_path)
    with pytest.raises(FileNotFoundError, match='returned without writing'): build_once(tmp_path/'x', lambda tmp: None)
    (tmp_path/'y').write_text('incomplete')                          # `valid` says no: rebuilt
    build_once(tmp_path/'y', lambda tmp: tmp.write_text('done'), valid=lambda p: p.exists() and p.read_text() == 'done')
    assert (tmp_path/'y').read_text() == 'done'


# ---------------------------------------------------------------- the real Fashion-MNIST arrow cache
needs_data = pytest.mark.skipif(not (mds.DEBIAN_FASHION/'t10k-labels-idx1-ubyte.gz').exists(),
                                reason='apt-get install dataset-fashion-mnist')

CHILD = textwrap.dedent('''
    import os, sys, time, hashlib
    from pathlib import Path
    import numpy as np, datasets
    import miniai.datasets as mds
    log, go, ready = map(Path, sys.argv[1:4])
    save = datasets.DatasetDict.save_to_disk
    def counting(self, *a, **k):                    # one line per build of the cache
        with open(log, 'a') as f: f.write(f'{os.getpid()}\\n')
        return save(self, *a, **k)
    datasets.DatasetDict.save_to_disk = counting
    ready.touch()
    while not go.exists(): time.sleep(0.005)
    dd = mds.load_fashion_mnist()
    ims = np.stack([np.asarray(dd[s][i]['image']) for s, i in (('train', 0), ('train', 59999), ('test', 9999))])
    labels = np.concatenate([np.array(dd[s]['label']) for s in ('train', 'test')])
    print('DIGEST', hashlib.sha256(ims.tobytes() + labels.tobytes()).hexdigest(), len(dd['train']), len(dd['test']))
''')

def start(tmp_path, tag, env):
    log, go, ready = tmp_path/'builds.log', tmp_path/f'go-{tag}', tmp_path/f'ready-{tag}'
    p = subprocess.Popen([sys.executable, '-c', CHILD, str(log), str(go), str(ready)], env=env, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, go, ready

def wait_ready(procs, timeout=300):
    t = time.time()
    while not all(r.exists() for _, _, r in procs):
        for p, _, _ in procs:
            if p.poll() is not None: raise RuntimeError(f'a child died on start-up: {p.stderr.read()[-2000:]}')
        if time.time() - t > timeout: raise TimeoutError('children did not start')
        time.sleep(0.05)

@needs_data
@unix
def test_arrow_cache_killed_builds_then_four_first_loads(tmp_path):
    "Builders killed half way, then four processes loading Fashion-MNIST at once on that cache: all succeed, one build."
    cache = tmp_path/'cache'
    env = {k: v for k, v in os.environ.items() if k != 'MINIAI_DATA'} | dict(
        MINIAI_CACHE=str(cache), HF_DATASETS_DISABLE_PROGRESS_BARS='1', PYTHONPATH=str(ROOT), HF_HUB_OFFLINE='1')
    rng, log, stale = random.Random(0), tmp_path/'builds.log', 0
    arrows = lambda: [p for p in (cache/'fashion_mnist').glob('arrow-*')] if (cache/'fashion_mnist').exists() else []
    committed = 0
    for k in range(N // 10):                         # kill builders while they write the cache folder (fault table runs)
        for a in arrows(): shutil.rmtree(a)          # a kill after the rename left a complete cache: start again without it
        p, go, ready = start(tmp_path, f'kill{k}', env)
        wait_ready([(p, go, ready)])
        n = len(log.read_text().split()) if log.exists() else 0
        go.touch()
        t = time.time()
        while (len(log.read_text().split()) if log.exists() else 0) == n:   # until it starts writing
            assert p.poll() is None and time.time() - t < 900, 'the builder ended before it wrote the cache'
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 1.))
        p.send_signal(signal.SIGKILL); p.wait()
        stale += bool(leftovers(cache/'fashion_mnist'))
        committed += bool(arrows())
    for a in arrows(): shutil.rmtree(a)
    log.unlink(missing_ok=True)
    procs = [start(tmp_path, f'load{i}', env) for i in range(4)]
    wait_ready(procs)
    for _, go, _ in procs: go.touch()
    outs = []
    for p, _, _ in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        outs.append([l for l in out.splitlines() if l.startswith('DIGEST')][0])
    print(f'{N // 10} builders killed while writing: {stale} left a temporary folder, {committed} had already committed; {outs[0]}')
    assert len(set(outs)) == 1 and outs[0].endswith(' 60000 10000')
    assert len((tmp_path/'builds.log').read_text().split()) == 1     # exactly one build
    arrow = cache/'fashion_mnist'
    assert not leftovers(arrow), leftovers(arrow)
    assert len([p for p in arrow.iterdir() if p.name.startswith('arrow-')]) == 1
