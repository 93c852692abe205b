"""Images per second for one shuffled epoch of Fashion-MNIST training batches (bs=256, float, normalised).

Three ways, measured side by side in one run:
  fast   miniai's TensorLoader: one uint8 tensor, batches by indexing, normalised per batch
  hf     the original course's way: an HF Dataset with a per-item transform + collate, torch DataLoader
  limit  plain indexing into a tensor that is already float and normalised (nothing left to do)

    python bench/data.py [--bs 256] [--repeats 3] [--hf_items N]
Target: fast >= 20x hf, and fast within 1.5x of limit.
"""
import argparse, time, statistics
import torch
from torch.utils.data import DataLoader
from miniai.core import set_seed
from miniai.datasets import (load_fashion_mnist, fashion_mnist_arrays, TensorLoader, EpochSampler, image_tfm,
                             collate_dict, to_float)

def run_epoch(dl, limit_items=None):
    n, t = 0, time.perf_counter()
    for xb, yb in dl:
        n += len(xb)
        if limit_items and n >= limit_items: break
    return n / (time.perf_counter() - t)

def measure(bs:int=256, repeats:int=3, hf_items:int=20000, verbose:bool=True) -> dict:
    "Median images/s of the three ways, interleaved `repeats` times: {'fast': ..., 'hf': ..., 'limit': ...}."
    a = argparse.Namespace(bs=bs, repeats=repeats, hf_items=hf_items)
    set_seed(0)
    x, y = (torch.from_numpy(o.copy()) for o in fashion_mnist_arrays()['train'])
    xf = to_float(x)                                            # the limit: already float and normalised
    dd = load_fashion_mnist()
    tds = dd['train'].with_transform(image_tfm())
    def fast():  return run_epoch(TensorLoader(x, y, batch_size=a.bs, shuffle=True, seed=0))
    def hf():    return run_epoch(DataLoader(tds, a.bs, sampler=EpochSampler(len(tds), seed=0),
                                             collate_fn=collate_dict(tds)), a.hf_items)
    def limit():
        n, t = 0, time.perf_counter()
        idx = torch.randperm(len(xf))
        for i in range(0, len(xf), a.bs):
            j = idx[i:i+a.bs]; xb, yb = xf[j], y[j]; n += len(xb)
        return n / (time.perf_counter() - t)
    res = {'fast': [], 'hf': [], 'limit': []}
    for r in range(a.repeats):                                  # interleaved, so noise hits all three alike
        for k, f in (('fast', fast), ('hf', hf), ('limit', limit)): res[k].append(f())
    med = {k: statistics.median(v) for k, v in res.items()}
    if verbose:
        for k in ('fast', 'hf', 'limit'): print(f'{k:6s} {med[k]:>12,.0f} images/s   (runs: {", ".join(f"{v:,.0f}" for v in res[k])})')
    return med

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--bs', type=int, default=256)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--hf_items', type=int, default=20000, help='items to time on the (slow) HF path')
    a = p.parse_args()
    torch.set_num_threads(1)   # all three single-threaded: a fair comparison on a shared machine
    med = measure(a.bs, a.repeats, a.hf_items)
    print(f'fast / hf    = {med["fast"]/med["hf"]:.1f}x   (target >= 20x)')
    print(f'limit / fast = {med["limit"]/med["fast"]:.2f}x  (target <= 1.5x)')

if __name__ == '__main__': main()
