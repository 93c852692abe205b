"LoRA adapters (miniai.lora): bad inputs, file round trips, and the output of `peft` (skipped when peft is not installed)."
import copy, json
import pytest, torch
from torch import nn
from safetensors.torch import save_file
from miniai.lora import (LoRALinear, add_lora, lora_layers, merge_lora, unmerge_lora, unload_lora, save_lora, load_lora,
                         read_lora_meta, n_params)

def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 6))

def test_rank_larger_than_layer():
    with pytest.raises(ValueError, match=r"LoRA rank 7 is larger than the layer '2' \(8 -> 6\).*rank <= 6"):
        add_lora(small_model(), rank=7, targets=('0', '2'))
    with pytest.raises(ValueError, match='rank <= 8'):
        LoRALinear(nn.Linear(8, 32), rank=9)
    m = small_model()
    with pytest.raises(ValueError): add_lora(m, rank=7, targets=('0', '2'))
    assert not lora_layers(m) and all(p.requires_grad for p in m.parameters())   # nothing changed before the error

def test_rank_full_is_allowed():
    m = add_lora(small_model(), rank=6, targets=('0', '2'))
    assert [l.rank for l in lora_layers(m).values()] == [6, 6]

@pytest.mark.parametrize('rank', [0, -1, 2.0, True, '4'])
def test_rank_below_one_or_not_int(rank):
    with pytest.raises(ValueError, match='integer >= 1'): add_lora(small_model(), rank=rank, targets=('0',))

def test_no_matching_targets():
    with pytest.raises(ValueError, match=r"no nn.Linear layer matches the targets \('attn1.q', .*\).*named like \['0', '2'\]"):
        add_lora(small_model())                                  # the default targets are the U-Net's attention
    with pytest.raises(ValueError, match='no nn.Linear layer matches'):
        add_lora(small_model(), targets=('1',))                  # '1' is the ReLU: not a linear layer

def test_twice_and_wrong_type():
    m = add_lora(small_model(), rank=2, targets=('0',))
    with pytest.raises(ValueError, match='already has LoRA adapters'): add_lora(m, rank=2, targets=('2',))
    with pytest.raises(TypeError, match='wraps an nn.Linear'): LoRALinear(nn.Conv2d(3, 4, 1))

def test_suffix_matching_is_by_whole_name_parts():
    m = nn.Module(); m.q = nn.Linear(4, 4); m.seq = nn.Linear(4, 4)     # 'seq' ends with 'q' but not with '.q'
    add_lora(m, rank=1, targets=('q',))
    assert list(lora_layers(m)) == ['q']

def test_start_equal_then_merge_unmerge_unload():
    m, x = small_model(), torch.randn(3, 12)
    y0 = m(x).detach(); w0 = copy.deepcopy(m.state_dict())
    add_lora(m, rank=3, alpha=6, targets=('0', '2'))
    assert torch.equal(m(x), y0)
    assert n_params(m, trainable=True) == 3 * (12 + 8) + 3 * (8 + 6)
    for l in lora_layers(m).values(): nn.init.normal_(l.B)
    y1 = m(x).detach()
    merge_lora(m); merge_lora(m)                                 # merging twice adds the update once
    torch.testing.assert_close(m(x), y1, atol=1e-5, rtol=1e-5)
    unmerge_lora(m)
    torch.testing.assert_close(m[0].base.weight, w0['0.weight'], atol=1e-6, rtol=0)
    plain = unload_lora(copy.deepcopy(m), merge=False)
    assert set(plain.state_dict()) == set(w0)
    torch.testing.assert_close(plain(x), y0, atol=1e-5, rtol=1e-5)

def test_save_load_round_trip_and_bad_files(tmp_path):
    m = add_lora(small_model(), rank=2, targets=('0', '2'))
    for l in lora_layers(m).values(): nn.init.normal_(l.B)
    p = save_lora(m, tmp_path/'a.safetensors', base='small_model')
    md = read_lora_meta(p)
    assert (md['rank'], md['alpha'], md['targets'], md['layers'], md['base']) == (2, 2., ['0', '2'], ['0', '2'], 'small_model')
    m2 = load_lora(small_model(), p)
    x = torch.randn(3, 12)
    assert torch.equal(m2(x), m(x))
    with pytest.raises(ValueError, match='for another model'): load_lora(add_lora(small_model(), rank=1, targets=('0', '2')), p)
    with pytest.raises(ValueError, match='for another model'):
        load_lora(nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 6)), p)
    with pytest.raises(FileNotFoundError, match='save_lora'): load_lora(small_model(), tmp_path/'missing.safetensors')
    save_file({'w': torch.zeros(2)}, str(tmp_path/'other.safetensors'))
    with pytest.raises(ValueError, match='not written by save_lora'): load_lora(small_model(), tmp_path/'other.safetensors')
    with pytest.raises(ValueError, match='unmerge_lora'): save_lora(merge_lora(m), tmp_path/'b.safetensors')
    assert sorted(q.name for q in tmp_path.iterdir()) == ['a.safetensors', 'other.safetensors']   # no partial files left

def _peft():
    try:
        import peft
        from peft import LoraConfig, get_peft_model
        return LoraConfig, get_peft_model
    except Exception as e:   # absent, or present without the transformers it imports
        pytest.skip(f'peft is not usable here ({type(e).__name__}: {e})')

@pytest.mark.parametrize('rank,alpha', [(1, 1.), (3, 5.), (6, 16.)])
def test_matches_peft(rank, alpha):
    LoraConfig, get_peft_model = _peft()
    ref = get_peft_model(small_model(), LoraConfig(r=rank, lora_alpha=alpha, target_modules=['0', '2'], lora_dropout=0.))
    ours = add_lora(small_model(), rank=rank, alpha=alpha, targets=('0', '2'))
    g = torch.Generator().manual_seed(1)
    for name, l in lora_layers(ours).items():                   # copy random A and B into both
        pl = ref.base_model.model.get_submodule(name)
        A, B = torch.randn(l.A.shape, generator=g), torch.randn(l.B.shape, generator=g)
        with torch.no_grad():
            l.A.copy_(A); l.B.copy_(B)
            pl.lora_A['default'].weight.copy_(A); pl.lora_B['default'].weight.copy_(B)
    x = torch.randn(5, 12, generator=g)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    assert n_params(ours, trainable=True) == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    merged = ref.merge_and_unload()                              # peft's merge against ours
    merge_lora(ours)
    for name in ('0', '2'): torch.testing.assert_close(ours.get_submodule(name).base.weight, merged.get_submodule(name).weight, atol=1e-5, rtol=1e-5)
