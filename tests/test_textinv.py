"Textual inversion (39): bad inputs, the cached pipeline left untouched, and the saved embedding's round trip."
import pytest, torch
from miniai.pipeline import StableDiffusion
from miniai.latent import model_hash
from miniai.textinv import TEAL, render_concept, add_token, learn_embedding, save_embedding, load_embedding

ROWS = [('circle', 'large', 'centre', 'black'), ('square', 'small', 'left', 'gray')]
CAPS = ['a large teal circle in the centre', 'a small teal square on the left']

@pytest.fixture(scope='module')
def pipe(): return StableDiffusion.pretrained('small', device='cpu')   # the cached quick-mode stack

@pytest.fixture(scope='module')
def images(): return render_concept(TEAL, *zip(*ROWS))

def test_bad_tokens(pipe):
    with pytest.raises(ValueError, match='already in the vocabulary'): add_token(pipe, 'red', init='blue')
    with pytest.raises(ValueError, match='one lower-case word'): add_token(pipe, '<teal>', init='blue')
    with pytest.raises(ValueError, match='not in the vocabulary'): add_token(pipe, 'teal', init='cyan')

def test_bad_images(pipe, images):
    with pytest.raises(ValueError, match='no images'): learn_embedding(pipe, 'teal', images[:0], [], init='blue', steps=1)
    with pytest.raises(ValueError, match='images must be'): learn_embedding(pipe, 'teal', torch.zeros(2, 3, 16, 16), CAPS, init='blue', steps=1)
    with pytest.raises(ValueError, match='one caption per image'): learn_embedding(pipe, 'teal', images, CAPS[:1], init='blue', steps=1)
    with pytest.raises(ValueError, match='does not name'): learn_embedding(pipe, 'teal', images, ['a small red square'] * 2, init='blue', steps=1)

def test_learn_leaves_pipeline_and_round_trips(pipe, images, tmp_path):
    before = {k: model_hash(m) for k, m in (('text', pipe.text.encoder), ('unet', pipe.unet), ('vae', pipe.vae))}
    n = len(pipe.text.tok)
    new, losses = learn_embedding(pipe, 'teal', images, CAPS, init='blue', steps=3, bs=2)
    assert len(losses) == 3 and len(pipe.text.tok) == n and len(new.text.tok) == n + 1
    assert {k: model_hash(m) for k, m in (('text', pipe.text.encoder), ('unet', pipe.unet), ('vae', pipe.vae))} == before
    assert all(p.grad is None for p in pipe.unet.parameters())
    f = save_embedding(new, 'teal', tmp_path/'teal.safetensors')
    back = load_embedding(pipe, f)
    torch.testing.assert_close(back.text(['a small teal diamond'])[0], new.text(['a small teal diamond'])[0])
    with pytest.raises(ValueError, match='another text encoder'): load_embedding(new, f)
