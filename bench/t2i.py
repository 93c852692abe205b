"""Text-to-image measurements of the from-scratch Stable Diffusion (issue 10, "Measured"), at one stack size.

What it runs, in order (each part can be skipped):
1. GenEval-style correctness on the `shapes` stack: `--n_prompts` held-out one-object test captions per guidance scale
   (`--scales`), judged by the `shapes` attribute classifier; the share of images whose colour, shape and position all
   match the prompt, and each attribute alone. The judge's own score on the real images of those captions is the ceiling.
2. Fashion-MNIST class accuracy of images made from 'a photo of a {label}' by the Fashion stack
   (`pretrained_stack(size, data='fashion')`, built the first time: several CPU minutes at 'small'), judged by miniai's
   Fashion-MNIST classifier (`fid_classifier(size)` of miniai.fid); its accuracy on real test images is the ceiling.
3. Negative prompts: the rate of colour X for prompts that name no colour / name X, with and without X as the negative prompt.
4. Seconds per image at `--steps` steps at batch 1 and batch 64 on the device, and peak memory of a batch of 64 in a fresh
   process (peak resident set after loading and after sampling, from getrusage; torch.cuda.max_memory_allocated on a GPU).
5. `--compare`: the 'eps' and 'edm' parameterisations of `LDMConfig`, each trained by `train_stack_ldm` on the same VAE,
   text encoder, data, recipe and number of epochs (`--compare_epochs`, default the recipe's), then scored by GenEval.

Usage (from the repository root):

    python bench/t2i.py --size small --threads 1            # a CPU run of everything but --compare (a few minutes)
    python bench/t2i.py --size small --threads 1 --only compare --out /tmp/t2i_compare.json
    python bench/t2i.py --size full --compare --out t2i_full.json   # full size, for a GPU (builds the full stacks first)

It prints a markdown table per part and, with `--out`, writes every figure as JSON.
"""
from __future__ import annotations
import argparse, json, os, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from miniai.core import def_device, set_seed
from miniai.captions import load_judge
from miniai.fid import fid_classifier
from miniai.latent import pretrained_stack, train_stack_ldm, LDMConfig, ema_of, stack_data
from miniai.pipeline import StableDiffusion
from miniai.t2ieval import (geneval, best_scale, one_object_prompts, attribute_matches, fashion_pipe, fashion_accuracy,
                            classify_fashion, negative_colour, seconds_per_image, peak_memory)

PARTS = ('geneval', 'fashion', 'negative', 'speed', 'compare')

def geneval_table(res:dict) -> str:
    rows = ['| guidance | all (colour+shape+position) | colour | shape | position | size |', '|---|---|---|---|---|---|']
    rows += [f'| {w:g} | {r["all"]:.3f} | {r["colour"]:.3f} | {r["shape"]:.3f} | {r["position"]:.3f} | {r["size"]:.3f} |'
             for w, r in res['scales'].items()]
    return '\n'.join(rows)

def run_geneval(a, judge, dev) -> dict:
    pipe = StableDiffusion.pretrained(a.size, device=dev)
    d = one_object_prompts(a.n_prompts, a.seed)
    ceil = {k: v.float().mean().item() for k, v in attribute_matches(d['image'], d, judge).items()}
    t = time.time()
    res = geneval(pipe, a.n_prompts, a.scales, a.steps, a.sampler, a.seed, judge, a.bs)
    res['seconds'], res['judge_on_real'] = time.time() - t, ceil
    print(f'\n## GenEval ({res["n"]} prompts per scale, {a.steps} steps, {a.sampler}, {pipe.cfg.param}, size {a.size})\n')
    print(geneval_table(res))
    w, best = best_scale(res)
    print(f'\nbest guidance {w:g}: all-match {best:.3f}; the judge on the real images of the same captions: all-match {ceil["all"]:.3f}')
    return res

def run_fashion(a, dev) -> dict:
    t = time.time()
    pipe = fashion_pipe(a.size, device=dev)
    built = time.time() - t
    clf = fid_classifier(size=a.size, device=dev)
    _, va = stack_data('fashion', a.size)
    real = va['image'].float() / 127.5 - 1
    ceil = (classify_fashion(real, clf) == va['label']).float().mean().item()
    res = {}
    for w in a.fashion_scales:
        r = fashion_accuracy(pipe, clf, a.n_per_class, w, a.steps, a.sampler, a.seed, a.bs)
        res[float(w)] = {k: r[k] for k in ('accuracy', 'per_class')}
    print(f'\n## Fashion-MNIST class accuracy ({a.n_per_class} images per class, "a photo of a {{label}}", size {a.size})\n')
    print('| guidance | accuracy |\n|---|---|\n' + '\n'.join(f'| {w:g} | {r["accuracy"]:.3f} |' for w, r in res.items()))
    print(f'\nthe classifier on {len(real)} real test images: {ceil:.3f} (stack loaded/built in {built:.0f} s)')
    return {'scales': res, 'classifier_on_real': ceil, 'n_per_class': a.n_per_class, 'stack_seconds': built}

def run_negative(a, judge, dev) -> dict:
    pipe = StableDiffusion.pretrained(a.size, device=dev)
    r = negative_colour(pipe, a.n_prompts, a.neg_scale, a.steps, a.sampler, a.seed, judge, a.bs)
    print(f'\n## Negative prompts (rate of colour X, {r["n"]} prompts, guidance {a.neg_scale:g})\n')
    print('| prompts | no negative prompt | X as negative prompt |\n|---|---|---|')
    for k in ('no colour named', 'X named'): print(f'| {k} | {r[k]["no negative"]:.3f} | {r[k]["X negative"]:.3f} |')
    return r

def run_speed(a, dev) -> dict:
    pipe = StableDiffusion.pretrained(a.size, device=dev)
    out = {f'seconds_per_image_bs{b}': seconds_per_image(pipe, b, a.steps, a.sampler) for b in (1, 64)}
    out['memory_bs64'] = peak_memory(a.size, 64, a.steps, dev, a.threads)
    out['device'], out['threads'] = str(dev), torch.get_num_threads()
    print(f'\n## Speed and memory ({a.steps} steps, {a.sampler}, guidance 3, {dev}, {out["threads"]} thread(s))\n')
    print(json.dumps(out, indent=1))
    return out

def run_compare(a, judge, dev) -> dict:
    s = pretrained_stack(a.size, device=dev)
    out = {}
    for p in ('eps', 'edm'):
        t = time.time()
        if p == s['cfg'].param and a.compare_epochs is None:
            # the stack's own U-Net was trained by this same call (train_stack_ldm, this recipe, LDMConfig(p), seed 0)
            unet, cfg, how = s['unet'], s['cfg'], 'the cached stack U-Net (same recipe)'
        else:
            learn = train_stack_ldm(s['vae'], s['text'], a.size, LDMConfig(p), device=dev, epochs=a.compare_epochs)
            unet, cfg, how = ema_of(learn), learn.ldm_cfg, f'trained here in {time.time() - t:.0f} s'
        pipe = StableDiffusion(s['vae'], s['text'], unet, cfg).to(dev)
        res = geneval(pipe, a.n_prompts, a.scales, a.steps, a.sampler, a.seed, judge, a.bs)
        res['unet'] = how
        out[p] = res
        print(f'\n## {p} ({how}, {a.compare_epochs or "recipe"} epochs)\n')
        print(geneval_table(res))
    print('\n| param | best guidance | all-match |\n|---|---|---|')
    for p, r in out.items(): w, b = best_scale(r); print(f'| {p} | {w:g} | {b:.3f} |')
    return out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument('--size', default='small', choices=('small', 'full'), help='stack size of miniai.latent.STACK_RECIPES')
    ap.add_argument('--n_prompts', type=int, default=None, help='prompts per setting (default: 500 full, 128 small)')
    ap.add_argument('--n_per_class', type=int, default=None, help='Fashion images per class (default: 100 full, 20 small)')
    ap.add_argument('--scales', type=float, nargs='+', default=[1, 3, 5, 7], help='guidance scales for GenEval')
    ap.add_argument('--fashion_scales', type=float, nargs='+', default=[1, 3, 5], help='guidance scales for the Fashion accuracy')
    ap.add_argument('--neg_scale', type=float, default=3., help='guidance scale of the negative-prompt measurement')
    ap.add_argument('--judge', default='full', choices=('small', 'full'),
                    help="the shapes judge: 'full' (default; trained once and cached) or quick mode's 'small', which reads shapes poorly")
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--sampler', default='dpmpp_2m')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--bs', type=int, default=64, help='generation batch size')
    ap.add_argument('--only', nargs='+', choices=PARTS, default=None, help='run only these parts')
    ap.add_argument('--skip', nargs='+', choices=PARTS, default=[], help='skip these parts')
    ap.add_argument('--compare', action='store_true', help="also train 'eps' and 'edm' U-Nets at equal budget and compare them")
    ap.add_argument('--compare_epochs', type=int, default=None, help="epochs of each --compare training (default: the recipe's)")
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    ap.add_argument('--device', default=None, help='default: cuda when present, else cpu')
    ap.add_argument('--out', default=None, help='write every figure to this JSON file')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    full = a.size == 'full'
    a.n_prompts = a.n_prompts or (500 if full else 128)
    a.n_per_class = a.n_per_class or (100 if full else 20)
    parts = a.only or [p for p in PARTS if p not in a.skip and (p != 'compare' or a.compare)]
    dev = torch.device(a.device) if a.device else def_device
    judge = load_judge(size=a.judge, device=dev)
    print(f'judge ({a.judge}) test accuracy: {json.dumps({k: round(v, 3) for k, v in judge.accuracy.items()})}')
    out, t0 = {'args': vars(a)}, time.time()
    runs = {'geneval': lambda: run_geneval(a, judge, dev), 'fashion': lambda: run_fashion(a, dev),
            'negative': lambda: run_negative(a, judge, dev), 'speed': lambda: run_speed(a, dev),
            'compare': lambda: run_compare(a, judge, dev)}
    for p in parts:
        try: out[p] = runs[p]()
        except Exception as e:
            print(f'\n## {p} FAILED: {type(e).__name__}: {e}', file=sys.stderr); out[p] = {'error': f'{type(e).__name__}: {e}'}
    out['seconds'] = time.time() - t0
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1, default=str))
        print(f'\nwrote {a.out}')

if __name__ == '__main__': main()
