"""miniai.unet: unconditional models are what they were before class conditioning; bad input to the U-Net."""
from pathlib import Path
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from miniai.unet import UNet2D, UNetConfig, SelfAttention2D

REF = Path(__file__).parent/'data'/'unet_uncond_ref.safetensors'
TINY = UNetConfig(nfs=(8, 16), n_layers=1, attn_res=(16,), img_size=32, n_heads=2)   # the config REF was made with


def test_unconditional_unchanged():
    "Same seed, same config: the same state_dict keys and tensors (exactly) and the same outputs as the code before conditioning."
    with safe_open(str(REF), 'pt') as f: assert 'b2f1c32' in f.metadata()['made_by']
    ref = load_file(str(REF))
    torch.manual_seed(0)
    m = UNet2D(TINY)
    sd = m.state_dict()
    ref_sd = {k.removeprefix('state/'): v for k, v in ref.items() if k.startswith('state/')}
    assert sorted(sd) == sorted(ref_sd)                   # same keys (safetensors stores them sorted)
    for k in sd: assert torch.equal(sd[k], ref_sd[k]), k  # byte for byte
    with torch.no_grad(): out = m(ref['x'], ref['t'])
    torch.testing.assert_close(out, ref['out'], rtol=1e-5, atol=1e-6)   # float kernels may differ across CPUs
    assert not hasattr(m, 'class_emb') and m.null_class is None


def test_conditional_adds_one_tensor_and_leaves_the_rest():
    torch.manual_seed(0)
    base = UNet2D(TINY)
    torch.manual_seed(0)
    cond = UNet2D(TINY, n_classes=5)
    extra = set(cond.state_dict()) - set(base.state_dict())
    assert extra == {'class_emb.weight'}
    for k, v in base.state_dict().items(): assert torch.equal(cond.state_dict()[k], v), k


@pytest.fixture(scope='module')
def cond(): return UNet2D(TINY, n_classes=3)

@pytest.mark.parametrize('c, msg', [
    (torch.tensor([0, 4]), 'class id 4 is out of range'),
    (torch.tensor([-2, 0]), 'class id -2 is out of range'),
    (7, 'class id 7 is out of range'),
    (torch.tensor([0., 1.]), 'must be integers'),
    (torch.tensor([True, False]), 'must be integers'),
    (torch.tensor([0, 1, 2]), 'one class id per image, shape (2,)'),
])
def test_bad_class_ids(cond, c, msg):
    with pytest.raises(ValueError, match=msg.replace('(', r'\(').replace(')', r'\)')): cond(torch.randn(2, 1, 16, 16), 1., c=c)

def test_null_class_is_accepted(cond):
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad(): torch.testing.assert_close(cond(x, 1.), cond(x, 1., c=3), rtol=0, atol=0)

def test_classes_given_to_unconditional_model():
    with pytest.raises(ValueError, match=r'unconditional \(n_classes=None\)'): UNet2D(TINY)(torch.randn(1, 1, 8, 8), 1., c=0)

@pytest.mark.parametrize('n', [0, -1, 2.5, True])
def test_bad_n_classes(n):
    with pytest.raises(ValueError, match='n_classes must be a positive int'): UNet2D(TINY, n_classes=n)

@pytest.mark.parametrize('shape, msg', [
    ((2, 1, 1, 16), 'each side must be at least 2 pixels'),    # TINY has 2 levels: sides of 2 or more
    ((2, 1, 16, 0), 'each side must be at least 2 pixels'),
    ((0, 1, 16, 16), 'needs at least one image'),
    ((2, 3, 16, 16), 'wants images of shape (B, 1, H, W)'),
    ((2, 16, 16), 'wants images of shape (B, 1, H, W)'),
])
def test_bad_image_sizes(shape, msg):
    with pytest.raises(ValueError, match=msg.replace('(', r'\(').replace(')', r'\)')):
        UNet2D(TINY)(torch.randn(shape), torch.ones(shape[0]))

def test_odd_sizes_are_padded_and_cropped():
    m = UNet2D(UNetConfig(nfs=(8, 16, 32), n_layers=1, attn_res=(), n_heads=2))
    with torch.no_grad():
        for hw in [(4, 4), (5, 7), (28, 28), (33, 9)]: assert m(torch.randn(1, 1, *hw), 1.).shape == (1, 1, *hw)

def test_integer_images():
    with pytest.raises(ValueError, match='float images'): UNet2D(TINY)(torch.zeros(1, 1, 8, 8, dtype=torch.long), 1.)

@pytest.mark.parametrize('ch, heads', [(32, 3), (24, 5)])
def test_heads_must_divide_channels(ch, heads):
    with pytest.raises(ValueError, match=f'{ch} channels cannot be split into n_heads={heads}'): SelfAttention2D(ch, heads)
    with pytest.raises(ValueError, match=f'cannot be split into n_heads={heads}'):
        UNet2D(UNetConfig(nfs=(ch, ch), n_layers=1, attn_res=(32,), n_heads=heads))
