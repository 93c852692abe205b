"""miniai.audio and miniai.audiodiff: bad input (wrong sample rate, pitch out of range), WAV round trips, the filterbank against librosa where it is installed."""
import math, wave
import numpy as np
import pytest
import torch
from miniai.audio import (SR, midi_to_hz, PITCHES, N_MELS, N_FFT, check_sr, check_pitch, note, make_notes, audio_items, resample,
                          mel_spec, audio_to_image, mel_filterbank, estimate_pitch, pitch_to_class, class_to_pitch,
                          write_wav, read_wav, spec_to_audio, griffin_lim)
from miniai.unet import UNet2D
from miniai.audiodiff import sample_notes, save_clips, audio_unet_config, chance_share


# --- wrong sample rate ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('fn', [lambda a, sr: check_sr(a, sr), lambda a, sr: mel_spec(a, sr),
                                lambda a, sr: audio_to_image(a, sr), lambda a, sr: estimate_pitch(a, sr)])
@pytest.mark.parametrize('sr', [16000, 44100, 22050])
def test_wrong_sample_rate_is_refused_with_the_fix(fn, sr):
    with pytest.raises(ValueError, match=f'audio at {sr} Hz, but miniai.audio works at SR={SR} Hz: resample it first'):
        fn(torch.zeros(sr), sr)


def test_the_fix_works():
    t = torch.arange(44100, dtype=torch.float64) / 44100
    a = resample(torch.sin(2 * math.pi * midi_to_hz(60).item() * t), 44100)
    assert a.shape == (SR,)
    assert abs(estimate_pitch(a.float(), SR).item() - 60) < 0.2


def test_read_wav_keeps_the_files_rate_and_check_sr_refuses_it(tmp_path):
    p = write_wav(tmp_path/'a.wav', torch.zeros(16000), sr=16000)
    a, sr = read_wav(p)
    assert sr == 16000
    with pytest.raises(ValueError, match='audio at 16000 Hz'): mel_spec(a, sr)


# --- pitch outside the data set's range ----------------------------------------------------------------------------

@pytest.mark.parametrize('p', [min(PITCHES) - 1, max(PITCHES) + 1, 0, 127, -5])
def test_out_of_range_pitch_is_refused(p):
    msg = f"pitch {p} is outside the data set's range: use MIDI notes {min(PITCHES)}..{max(PITCHES)}"
    for fn in (check_pitch, note, pitch_to_class, lambda q: make_notes(3, pitches=[60, q])):
        with pytest.raises(ValueError, match=msg.replace('(', r'\(').replace(')', r'\)').replace('.', r'\.')): fn(p)


def test_pitch_not_among_the_models_classes():
    with pytest.raises(ValueError, match='pitch 61 is outside'): pitch_to_class(61, range(48, 72, 4))
    with pytest.raises(ValueError, match='class ids must be in 0..5'): class_to_pitch(6, range(48, 72, 4))
    with pytest.raises(ValueError, match='whole MIDI note numbers'): check_pitch(60.25)


def test_sample_notes_refuses_bad_pitches():
    torch.manual_seed(0)
    net = UNet2D(audio_unet_config(6, 'small')).eval()
    with pytest.raises(ValueError, match="pitch 90 is outside the data set's range"): sample_notes(net, [90], range(48, 72, 4), 0.5)
    with pytest.raises(ValueError, match='pitch 49 is outside'): sample_notes(net, [49], range(48, 72, 4), 0.5)
    with pytest.raises(ValueError, match='pass the pitches it was trained on'): sample_notes(net, [60], PITCHES, 0.5)
    ims = sample_notes(net, [48, 68], range(48, 72, 4), 0.5, n_steps=2, generator=torch.Generator().manual_seed(0), device='cpu')
    assert ims.shape == (2, 1, N_MELS, 32) and ims.min() >= -1 and ims.max() <= 1


# --- WAV round trip ------------------------------------------------------------------------------------------------

def test_wav_round_trip_is_exact_to_16_bits(tmp_path):
    a = make_notes(3, seed=5)['audio']
    for i, x in enumerate(a):
        back, sr = read_wav(write_wav(tmp_path/f'{i}.wav', x))
        assert sr == SR and back.dtype == torch.float32 and back.shape == x.shape
        assert (back - x).abs().max() <= 0.5 / 32767 + 1e-7
    with wave.open(str(tmp_path/'0.wav'), 'rb') as w:   # what other programs see: mono, 16-bit, SR
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, SR, SR)


def test_wav_clips_out_of_range_values_and_refuses_bad_shapes(tmp_path):
    back, _ = read_wav(write_wav(tmp_path/'loud.wav', torch.tensor([2., -3., 0.5])))
    assert torch.allclose(back, torch.tensor([1., -1., 0.5]), atol=1e-4)
    with pytest.raises(ValueError, match='one mono clip'): write_wav(tmp_path/'b.wav', torch.zeros(2, 10))
    with pytest.raises(ValueError, match='floats in'): write_wav(tmp_path/'i.wav', torch.zeros(10, dtype=torch.int16))
    with wave.open(str(tmp_path/'8bit.wav'), 'wb') as w:
        w.setnchannels(1); w.setsampwidth(1); w.setframerate(SR); w.writeframes(b'\x80' * 10)
    with pytest.raises(ValueError, match='mono 16-bit PCM'): read_wav(tmp_path/'8bit.wav')


def test_refused_write_keeps_the_old_file(tmp_path):
    p = tmp_path/'x.wav'
    write_wav(p, torch.zeros(10))
    with pytest.raises(ValueError): write_wav(p, torch.zeros(2, 2))
    assert read_wav(p)[0].shape == (10,)          # the old file is intact
    assert [f.name for f in tmp_path.iterdir()] == ['x.wav']


def test_save_clips_round_trip(tmp_path):
    a = make_notes(2)['audio']
    paths = save_clips(a, tmp_path, ['one', 'two'])
    assert [p.name for p in paths] == ['one.wav', 'two.wav']
    assert torch.allclose(read_wav(paths[1])[0], a[1], atol=1e-4)
    with pytest.raises(ValueError, match='2 names for 1 clips'): save_clips(a[:1], tmp_path, ['a', 'b'])


# --- the data set and the inversion --------------------------------------------------------------------------------

def test_items_fixed_by_seed_and_index():
    a = audio_items(3, [7, 1000])
    b = audio_items(3, [1000, 7])
    assert torch.equal(a['audio'][0], b['audio'][1]) and torch.equal(a['pitch'], b['pitch'].flip(0))


def test_round_trip_keeps_the_pitch():
    d = make_notes(24, seed=1)
    back = spec_to_audio(audio_to_image(d['audio'], SR), generator=torch.Generator().manual_seed(0))
    err = (estimate_pitch(back, SR) - d['pitch']).abs()
    assert (err <= 1).float().mean() >= 0.9
    assert chance_share(PITCHES) < 0.15


def test_griffin_lim_bad_args():
    with pytest.raises(ValueError, match='momentum must be in'): griffin_lim(torch.ones(N_FFT // 2 + 1, 4), momentum=1.)


def test_filterbank_matches_librosa():
    librosa_filters = pytest.importorskip('librosa.filters')
    for n_mels, fmin, fmax in [(N_MELS, 0., None), (64, 50., 3000.), (40, 0., 4000.)]:
        ours = mel_filterbank(n_mels, fmin=fmin, fmax=fmax)
        ref = librosa_filters.mel(sr=SR, n_fft=N_FFT, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True, norm=None)
        assert np.allclose(ours.numpy(), ref, atol=1e-5)
