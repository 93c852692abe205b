"Bad inputs and the source-resolution order of `miniai.datasets`; nothing here touches the network."
import gzip, io, os, shutil, socket, time
from pathlib import Path
import numpy as np, pytest, torch
import miniai.datasets as mds
from miniai.datasets import FASHION_FILES, DataError, fashion_mnist_dir, read_idx, load_fashion_mnist

SRC = mds.DEBIAN_FASHION
REAL_ONLINE = mds.online
needs_data = pytest.mark.skipif(not (SRC/'t10k-labels-idx1-ubyte.gz').exists(), reason='apt-get install dataset-fashion-mnist')

@pytest.fixture
def isolated(tmp_path, monkeypatch):
    "An empty cache, no $MINIAI_DATA, no Debian folder, and a network that always fails."
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path/'cache'))
    monkeypatch.delenv('MINIAI_DATA', raising=False)
    monkeypatch.setattr(mds, 'DEBIAN_FASHION', tmp_path/'no-debian')
    def no_net(*a, **k): raise OSError('network unreachable (test)')
    monkeypatch.setattr(mds.urllib.request, 'urlopen', no_net)
    monkeypatch.setattr(mds.datasets, 'load_dataset', no_net)
    monkeypatch.setattr(mds, 'online', lambda *a, **k: False)
    return tmp_path

def copy_files(dest):
    dest.mkdir(parents=True, exist_ok=True)
    for f in FASHION_FILES: shutil.copy(SRC/f, dest/f)
    return dest

def test_nothing_found_lists_every_way(isolated):
    with pytest.raises(DataError) as e: load_fashion_mnist()
    msg = str(e.value)
    for way in ('path=FOLDER', 'MINIAI_DATA', 'apt-get install dataset-fashion-mnist', 'internet', 'hub'):
        assert way in msg

@needs_data
def test_resolution_order(isolated, monkeypatch):
    env, cache = copy_files(isolated/'env'), isolated/'cache'/'fashion_mnist'
    explicit = copy_files(isolated/'explicit')
    monkeypatch.setattr(mds, 'DEBIAN_FASHION', SRC)
    assert fashion_mnist_dir() == SRC                        # only Debian's
    copy_files(cache)
    assert fashion_mnist_dir() == cache                      # the cache beats Debian's
    monkeypatch.setenv('MINIAI_DATA', str(env))
    assert fashion_mnist_dir() == env                        # $MINIAI_DATA beats the cache
    assert fashion_mnist_dir(explicit) == explicit           # an explicit path beats everything

@needs_data
def test_explicit_path_missing_files(isolated):
    d = copy_files(isolated/'partial'); (d/'t10k-labels-idx1-ubyte.gz').unlink()
    with pytest.raises(DataError, match='lacks'): fashion_mnist_dir(d)

@needs_data
@pytest.mark.parametrize('damage', ['truncate', 'flip', 'empty'])
def test_corrupt_file_names_itself(isolated, damage):
    d = copy_files(isolated/'data'); f = d/'train-images-idx3-ubyte.gz'
    raw = f.read_bytes()
    if damage == 'truncate': f.write_bytes(raw[:len(raw)//3])
    elif damage == 'flip': b = bytearray(raw); b[len(b)//2] ^= 0x55; f.write_bytes(bytes(b))
    else: f.write_bytes(b'')
    with pytest.raises(DataError, match='train-images-idx3-ubyte.gz'): load_fashion_mnist(d)
    assert not list((isolated/'cache').rglob('arrow-*')), 'no dataset may be cached from a corrupt file'

@needs_data
def test_wrong_shape(isolated, tmp_path):
    f = tmp_path/'x.gz'
    with gzip.open(f, 'wb') as g: g.write(gzip.decompress((SRC/'t10k-labels-idx1-ubyte.gz').read_bytes()))
    with pytest.raises(DataError, match='expected'): read_idx(f, (60000,))

def test_offline_fails_fast(isolated, monkeypatch):
    "No network: one connection attempt per server, no retries, the clear error at once."
    tries = []
    def refused(addr, timeout=None, **kw):
        tries.append((addr, timeout)); raise OSError('network unreachable (test)')
    monkeypatch.setattr(mds, 'online', REAL_ONLINE)
    monkeypatch.setattr(socket, 'create_connection', refused)
    for v in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE'): monkeypatch.delenv(v, raising=False)   # tools/test.sh sets them
    t = time.perf_counter()
    with pytest.raises(DataError, match='apt-get install'): load_fashion_mnist()
    assert time.perf_counter() - t < 2
    assert [a[0] for a, _ in tries] == ['fashion-mnist.s3-website.eu-central-1.amazonaws.com', 'huggingface.co']
    assert all(to <= 3 for _, to in tries)
    tries.clear()
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')           # the hub is not even tried
    with pytest.raises(DataError): load_fashion_mnist()
    assert [a[0] for a, _ in tries] == ['fashion-mnist.s3-website.eu-central-1.amazonaws.com']

def test_missing_idx_file(tmp_path):
    with pytest.raises(DataError, match='nope.gz does not exist'): read_idx(tmp_path/'nope.gz')
    with pytest.raises(DataError, match=r'does not exist \(it is a folder\)'): read_idx(tmp_path)

def test_not_idx(tmp_path):
    f = tmp_path/'notes.gz'
    with gzip.open(f, 'wb') as g: g.write(b'hello world, not an idx file')
    with pytest.raises(DataError, match='not a uint8 IDX'): read_idx(f)

@needs_data
def test_download_checks_sha_and_writes_atomically(isolated, monkeypatch):
    good = {f: (SRC/f).read_bytes() for f in FASHION_FILES}
    def fake(url, timeout=None):
        name = url.rsplit('/', 1)[1]
        data = good[name] if 'labels' in name else good[name][:-100]   # image files arrive damaged
        return io.BytesIO(data)
    monkeypatch.setattr(mds.urllib.request, 'urlopen', fake)
    dest = isolated/'dl'
    with pytest.raises(DataError, match='sha256'): mds.download_fashion_mnist(dest)
    assert not any('images' in p.name for p in dest.iterdir()), 'a corrupt download must not be kept'
    assert not list(dest.glob('*.tmp')), 'no temporary files left behind'
    monkeypatch.setattr(mds.urllib.request, 'urlopen', lambda url, timeout=None: io.BytesIO(good[url.rsplit('/', 1)[1]]))
    assert mds.download_fashion_mnist(dest) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(FASHION_FILES)

@needs_data
def test_labels_match_idx_and_cache_roundtrip(isolated):
    d = copy_files(isolated/'data')
    dd1 = load_fashion_mnist(d)          # builds and caches
    dd2 = load_fashion_mnist(d)          # loads the cache
    y = read_idx(SRC/'t10k-labels-idx1-ubyte.gz')
    assert np.array_equal(np.array(dd1['test']['label']), y)
    assert np.array_equal(np.array(dd2['test']['label']), y)
    assert len(list((isolated/'cache'/'fashion_mnist').glob('arrow-*'))) == 1

def test_tensorloader_bad_input():
    with pytest.raises(ValueError, match='empty'): mds.TensorLoader(torch.zeros(0, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match='items but y has'): mds.TensorLoader(torch.zeros(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match='training and a validation split'):
        mds.DataLoaders.from_dd({'train': [1]})
    with pytest.raises(ValueError, match='n >= 1'): mds.get_grid(0)
