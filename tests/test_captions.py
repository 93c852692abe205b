"shapes and Fashion-MNIST captions: determinism, the Arrow cache under two processes at once, bad inputs, the judge's file checks."
import os, re, json, subprocess, sys, textwrap
from pathlib import Path
import numpy as np
import pytest
import torch
from safetensors.torch import save
from miniai.captions import (make_shapes, load_shapes, parse_caption, check_attrs, shapes_attrs, encode_attrs, item_uniforms,
                             shapes_from_captions, ShapesJudge, save_judge, load_judge, judge_captions, judge, SHAPES_ATTRS)

def test_items_fixed_by_seed_and_index():
    a, b = make_shapes(30), make_shapes(5, start=20)
    assert torch.equal(a['image'][20:25], b['image']) and a['caption'][20:25] == b['caption']
    assert not torch.equal(make_shapes(5, seed=1)['image'], a['image'][:5])
    assert not torch.equal(make_shapes(5, split='test')['image'], a['image'][:5])

def test_every_caption_parses_back():
    d = make_shapes(3000, seed=3)
    for i, c in enumerate(d['caption']):
        for k, v in parse_caption(c).items():
            if v is not None: assert v == SHAPES_ATTRS[k][d[k][i]], (c, k)

def test_perfect_images_for_captions():
    caps = make_shapes(50, split='test')['caption']
    ims, at = shapes_from_captions(caps, seed=5)
    assert ims.shape == (50, 3, 32, 32) and ims.dtype == torch.uint8
    d = make_shapes(50, split='test')
    for k in ('shape1', 'colour1', 'size1', 'position1', 'shape2', 'count'): assert (at[k] == d[k]).all()

_BUILD = textwrap.dedent('''
    import sys
    from miniai.captions import load_shapes
    dd = load_shapes(300, 60, seed=11)
    print(len(dd['train']), dd['train'][7]['caption'])
''')

def test_cache_two_processes(tmp_path):
    env = {**os.environ, 'MINIAI_CACHE': str(tmp_path), 'OMP_NUM_THREADS': '1', 'HF_DATASETS_OFFLINE': '1'}
    ps = [subprocess.Popen([sys.executable, '-c', _BUILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in ps]
    for p, (o, e) in zip(ps, outs): assert p.returncode == 0, e[-2000:]
    assert outs[0][0] == outs[1][0] and outs[0][0].startswith('300 ')
    left = sorted(p.name for p in (tmp_path/'shapes').iterdir())
    assert left == ['arrow-v1-s11-300-60'], left          # one cache, no temporary folders left behind

def test_cache_matches_generator(tmp_path, monkeypatch):
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path))
    dd = load_shapes(40, 10, seed=2)
    d = make_shapes(40, seed=2)
    assert dd['train']['caption'] == d['caption']
    assert np.array_equal(np.asarray(dd['train'][5]['image']), d['image'][5].permute(1, 2, 0).numpy())
    assert load_shapes(40, 10, seed=2)['test']['caption'] == dd['test']['caption']   # from the cache

@pytest.mark.parametrize('cap,msg', [('', 'empty caption'), ('  . ', 'empty caption'),
                                     ('a small pink circle on the left', "unknown word(s) ['pink']"),
                                     ('a small red hexagon on the left', "unknown word(s) ['hexagon']"),
                                     ('a red small circle on the left', 'does not follow the shapes grammar'),
                                     ('a small red circle', 'does not follow the shapes grammar')])
def test_bad_captions(cap, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        parse_caption(cap)

def test_bad_attrs():
    a, _ = shapes_attrs(0, np.arange(20))
    with pytest.raises(ValueError, match="'colour1' has value"): check_attrs({**a, 'colour1': a['colour1'] + 10})
    with pytest.raises(ValueError, match='lacks the column'): check_attrs({k: v for k, v in a.items() if k != 'count'})
    with pytest.raises(ValueError, match='unknown attribute column'): check_attrs({**a, 'hue': a['count']})
    with pytest.raises(ValueError, match="'colour1' is 'pink'"):
        encode_attrs([{**parse_caption('a small red circle on the left'), 'colour1': 'pink'}])
    with pytest.raises(ValueError, match="split must be"): make_shapes(3, split='valid')
    with pytest.raises(ValueError, match='>= 0'): item_uniforms(0, [-3], 2)

def test_judge_checks(tmp_path):
    m = ShapesJudge()
    p = save_judge(m, tmp_path/'j.safetensors', {'all': 0.5})
    j = load_judge(p, device='cpu')
    assert j.accuracy == {'all': 0.5}
    x = make_shapes(4)['image']
    seen = judge(x, j)
    assert set(seen) == set(SHAPES_ATTRS) and all(len(v) == 4 and set(v) <= set(SHAPES_ATTRS[k]) for k, v in seen.items())
    with pytest.raises(ValueError, match=r'\(N, 3, 32, 32\)'): j.predict(x[:, :2])
    with pytest.raises(ValueError, match=r'\[-1, 1\]'): j.predict(x.float())
    with pytest.raises(ValueError, match='one caption per image'): judge_captions(x, ['a small red circle on the left'], j)
    bad = tmp_path/'old.safetensors'
    meta = {'miniai_model': 'ShapesJudge', 'config': json.dumps({'nfs': list(m.nfs)}),
            'attrs': json.dumps({**SHAPES_ATTRS, 'colour1': ['red']}), 'accuracy': '{}'}
    bad.write_bytes(save({k: v.contiguous() for k, v in m.state_dict().items()}, metadata=meta))
    with pytest.raises(ValueError, match='another shapes vocabulary'): load_judge(bad)
