"The VAE: KL against torch.distributions, bad image shapes, checkpoints loaded into the wrong config or from other models."
import pytest
import torch
from torch.distributions import Normal, kl_divergence
from miniai.vae import VAE, VAEConfig, DiagonalGaussian, save_vae, load_vae, psnr, encode_latents, decode_latents
from miniai.unet import UNet2D, save_unet

def small(**kw): return VAE(VAEConfig(**{'in_ch': 3, 'nfs': (8, 16, 32), **kw}))

def test_kl_oracle():
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(5, 4, 3, 3, generator=g), torch.randn(5, 4, 3, 3, generator=g)
    torch.testing.assert_close(DiagonalGaussian(mu, lv).kl(), kl_divergence(Normal(mu, (0.5*lv).exp()), Normal(0., 1.)))

@pytest.mark.parametrize('shape,msg', [((2, 1, 32, 32), r'\(B, 3, 32, 32\), got \(2, 1, 32, 32\)'),
                                       ((2, 3, 28, 28), 'pad 28x28'),
                                       ((2, 3, 64, 64), r'got \(2, 3, 64, 64\)'),
                                       ((3, 32, 32), r'\(B, 3, 32, 32\)')])
def test_wrong_images(shape, msg):
    with pytest.raises(ValueError, match=msg): small().encode(torch.randn(*shape))

def test_wrong_latents():
    with pytest.raises(ValueError, match=r'latents of shape \(B, 4, 8, 8\)'): small().decode(torch.randn(1, 4, 16, 16))

def test_roundtrip_and_scale(tmp_path):
    m = small().eval()
    m.cfg.scale_factor = 0.25
    m2 = load_vae(save_vae(m, tmp_path/'v.safetensors'), device='cpu')
    assert m2.cfg == m.cfg
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad(): torch.testing.assert_close(m2(x)[0], m(x)[0])
    z = encode_latents(m2, x, sample=False)
    torch.testing.assert_close(z, m2.encode(x).mean * 0.25)
    assert decode_latents(m2, z).abs().max() <= 1

def test_wrong_config(tmp_path):
    p = save_vae(small(), tmp_path/'v.safetensors')
    with pytest.raises(ValueError, match='latent_ch: saved 4, asked 8'): load_vae(p, cfg=VAEConfig(in_ch=3, nfs=(8, 16, 32), latent_ch=8))
    with pytest.raises(ValueError, match=r'nfs: saved \(8, 16, 32\), asked \(32, 64, 128\)'): load_vae(p, cfg=VAEConfig(in_ch=3))
    load_vae(p, cfg=VAEConfig(in_ch=3, nfs=[8, 16, 32], scale_factor=3.))   # the scale factor is not architecture
    save_unet(UNet2D(nfs=(8, 16), attn_res=()), tmp_path/'u.safetensors')
    with pytest.raises(ValueError, match='holds a UNet2D, not a VAE'): load_vae(tmp_path/'u.safetensors')
    with pytest.raises(FileNotFoundError, match='no saved VAE'): load_vae(tmp_path/'none.safetensors')

def test_psnr():
    torch.testing.assert_close(psnr(torch.zeros(1, 4), torch.full((1, 4), 0.2)), torch.tensor([20.]))
    with pytest.raises(ValueError, match='differ in shape'): psnr(torch.zeros(2, 3), torch.zeros(3, 3))
