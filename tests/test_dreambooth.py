"Dreambooth (nbs/40): bad inputs, the base pipeline left untouched, save/load of only what changed."
import os
os.environ.setdefault('MINIAI_QUICK', '1')
import pytest, torch
from miniai.latent import model_hash
from miniai.pipeline import StableDiffusion
from miniai.dreambooth import dreambooth, save_dreambooth, load_dreambooth, random_row
from miniai.textinv import TEAL, render_concept, add_token

PROMPT = 'a large sks circle in the centre'

@pytest.fixture(scope='module')
def pipe(): return StableDiffusion.pretrained('small', device='cpu')

@pytest.fixture(scope='module')
def subject(): return render_concept(TEAL, ['circle'] * 3, ['large'] * 3, ['centre'] * 3, ['black', 'gray', 'white'], seed=7)

@pytest.mark.parametrize('bad,msg', [
    (lambda s: s[:0], 'no images'),
    (lambda s: s[:, :, :28, :28], 'images must be'),
    (lambda s: s.float(), '[-1, 1]'),
    (lambda s: s[:, :1], 'images must be'),
])
def test_bad_images(pipe, subject, bad, msg):
    with pytest.raises(ValueError, match=msg.replace('[', r'\[').replace(']', r'\]')): dreambooth(pipe, bad(subject), PROMPT, steps=1, prior_weight=0.)

def test_bad_prompts(pipe, subject):
    with pytest.raises(ValueError, match="lacks the token 'sks'"): dreambooth(pipe, subject, 'a large circle in the centre', steps=1, prior_weight=0.)
    with pytest.raises(ValueError, match='2 prompts for 3 images'): dreambooth(pipe, subject, [PROMPT] * 2, steps=1, prior_weight=0.)
    with pytest.raises(ValueError, match='must not name'): dreambooth(pipe, subject, PROMPT, class_prompt='a sks circle', steps=1)
    with pytest.raises(ValueError, match='already in the vocabulary'): add_token(pipe, 'circle', vector=random_row(pipe.text))

def test_base_untouched_and_save_load(pipe, subject, tmp_path):
    h = model_hash(pipe.unet), model_hash(pipe.text.encoder), len(pipe.text.tok)
    db = dreambooth(pipe, subject, PROMPT, steps=2, n_class=2, class_steps=2)
    assert (model_hash(pipe.unet), model_hash(pipe.text.encoder), len(pipe.text.tok)) == h
    p = save_dreambooth(db, tmp_path/'sks.safetensors')
    assert p.stat().st_size < db.save(tmp_path/'full.safetensors').stat().st_size  # U-Net + one row, not the whole pipeline
    back = load_dreambooth(p, pipe)
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(back(PROMPT, generator=g(), steps=2), db(PROMPT, generator=g(), steps=2))
    (tmp_path/'bad.safetensors').write_bytes(b'not a file')
    with pytest.raises(Exception): load_dreambooth(tmp_path/'bad.safetensors', pipe)
