from __future__ import annotations

import pytest
import torch

from trainers.augment import AUGMENTATIONS, PARAMETERS, Context, build_augment
from trainers.catalog import AUGMENT
from trainers.errors import TrainerError

torch.set_num_threads(1)
GRAY = Context(channels=1, num_classes=4, mean=(0.5,), std=(0.25,))
RGB = Context(channels=3, num_classes=4, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
OFF = {k: 0.0 for k in ("hflip", "vflip", "brightness", "contrast", "saturation", "hue",
                        "cutout", "mixup", "cutmix", "noise")} | {"shift": 0}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b=8, c=1, h=6, w=6, seed=0):
    g = _gen(seed + 100)
    return torch.randn(b, c, h, w, generator=g), torch.arange(b) % 4


def _only(**on) -> dict:
    return {**OFF, **on}


def test_every_augment_option_is_a_step_or_a_parameter():
    assert set(AUGMENTATIONS) | set(PARAMETERS) == set(AUGMENT.options)


def test_defaults_turn_on_only_the_shift():
    assert build_augment({}, GRAY).names == ["shift"]
    assert build_augment(OFF, GRAY).names == []


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_each_step_is_deterministic_given_the_generator(name):
    value = {"shift": 2, "hue": 0.2}.get(name, 0.5)
    aug = build_augment(_only(**{name: value}), RGB)
    assert name in aug.names
    x, y = _batch(c=3)
    before = x.clone()
    a, b = aug(x, y, _gen(1)), aug(x, y, _gen(1))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    assert torch.equal(x, before)  # the stored batch is never changed in place
    assert a[0].shape == x.shape
    assert not torch.equal(a[0], aug(x, y, _gen(2))[0])


def test_flips_with_probability_one_and_zero():
    x, y = _batch()
    out, _ = build_augment(_only(hflip=1.0), GRAY)(x, y, _gen())
    torch.testing.assert_close(out, x.flip(-1))
    out, _ = build_augment(_only(vflip=1.0), GRAY)(x, y, _gen())
    torch.testing.assert_close(out, x.flip(-2))


def test_shift_translates_each_sample_with_black_fill():
    s = 1
    x, y = _batch(b=16)
    out, _ = build_augment(_only(shift=s), GRAY)(x, y, _gen())
    black = -0.5 / 0.25  # raw 0 in normalised units
    seen = set()
    for i in range(len(x)):
        padded = torch.full((1, 6 + 2 * s, 6 + 2 * s), black)
        padded[:, s:s + 6, s:s + 6] = x[i]
        matches = [(dy, dx) for dy in range(2 * s + 1) for dx in range(2 * s + 1)
                   if torch.equal(out[i], padded[:, dy:dy + 6, dx:dx + 6])]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 3  # offsets differ between samples


def test_mixup_targets_sum_to_one_and_match_the_mixed_inputs():
    x, y = _batch(b=4)  # labels 0..3: a target names both partners
    checked = 0
    for seed in range(5):
        out, t = build_augment(_only(mixup=0.4), GRAY)(x, y, _gen(seed))
        assert t.shape == (4, 4)
        torch.testing.assert_close(t.sum(1), torch.ones(4))
        lams = set()
        for i in range(4):
            if t[i, i] == 1:  # paired with itself
                torch.testing.assert_close(out[i], x[i])
                continue
            lam = float(t[i, i])
            j = int(torch.tensor([t[i, k] if k != i else -1 for k in range(4)]).argmax())
            assert float(t[i, j]) == pytest.approx(1 - lam, abs=1e-6)
            torch.testing.assert_close(out[i], lam * x[i] + (1 - lam) * x[j])
            lams.add(round(lam, 5))
            checked += 1
        assert len(lams) <= 1  # one lambda per batch
    assert checked >= 8


def test_cutmix_lambda_is_the_pasted_area():
    b, h, w = 8, 10, 10
    x = torch.arange(1.0, b + 1).view(b, 1, 1, 1).expand(b, 1, h, w).clone()  # image i == i+1
    y = torch.arange(b) % 4
    checked = 0
    for seed in range(6):
        out, t = build_augment(_only(cutmix=1.0), GRAY)(x, y, _gen(seed))
        torch.testing.assert_close(t.sum(1), torch.ones(b))
        for i in range(b):
            own = (out[i] == i + 1).float().mean().item()
            others = out[i][out[i] != i + 1]
            if len(others) == 0:
                continue  # paired with itself or an empty box: nothing pasted
            partner = int(others[0].item()) - 1
            assert (others == partner + 1).all()  # one rectangle from one partner
            expected = torch.zeros(4)
            expected[y[i]] += own
            expected[y[partner]] += 1 - own
            torch.testing.assert_close(t[i], expected)
            checked += 1
    assert checked > 10


def test_mix_prob_zero_never_mixes_and_both_mixers_alternate():
    x, y = _batch()
    aug = build_augment(_only(mixup=1.0, cutmix=1.0, mix_prob=0.0), GRAY)
    assert aug.names == []
    both = build_augment(_only(mixup=1.0, cutmix=1.0), GRAY)
    assert both.names == ["mixup"]  # one mixing step serves both options
    kinds = set()
    for seed in range(12):
        out, t = both(x, y, _gen(seed))
        pasted = (out != x).any(1)  # cutmix changes a rectangle, mixup every pixel
        kinds.add("mixup" if pasted.all() else "cutmix")
    assert kinds == {"mixup", "cutmix"}


def test_colour_jitter_works_on_raw_pixels_and_refuses_rgb_only_steps_on_gray():
    for name in ("saturation", "hue"):
        with pytest.raises(TrainerError, match=rf"augment\.{name}: needs three-channel"):
            build_augment(_only(**{name: 0.2}), GRAY)
    assert build_augment(_only(saturation=0.5, hue=0.2), RGB).names == ["saturation", "hue"]
    x, y = _batch()
    out, _ = build_augment(_only(brightness=0.8), GRAY)(x, y, _gen())
    raw_in, raw_out = x * 0.25 + 0.5, out * 0.25 + 0.5
    assert raw_out.min() >= 0 and raw_out.max() <= 1 + 1e-6
    # brightness multiplies every pixel by one factor per sample (where nothing clipped)
    inside = (raw_in > 0.05) & (raw_in < 0.5)
    ratios = [(raw_out[i][inside[i]] / raw_in[i][inside[i]]) for i in range(len(x))]
    assert all(r.max() - r.min() < 1e-4 for r in ratios if len(r))


def test_saturation_and_hue_leave_gray_pixels_alone():
    raw = torch.rand(4, 1, 5, 5).expand(4, 3, 5, 5)
    mean = torch.tensor(RGB.mean).view(1, 3, 1, 1)
    std = torch.tensor(RGB.std).view(1, 3, 1, 1)
    x = (raw - mean) / std
    out, _ = build_augment(_only(saturation=0.9, hue=0.4), RGB)(x, torch.zeros(4).long(), _gen())
    torch.testing.assert_close(out * std + mean, raw, atol=1e-5, rtol=0)


def test_hue_rotation_keeps_value_and_saturation():
    raw = torch.rand(6, 3, 4, 4)
    ctx = Context(3, 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    out, _ = build_augment(_only(hue=0.5), ctx)(raw, torch.zeros(6).long(), _gen())
    torch.testing.assert_close(out.amax(1), raw.amax(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.amax(1) - out.amin(1), raw.amax(1) - raw.amin(1),
                               atol=1e-5, rtol=0)
    assert (out - raw).abs().max() > 0.05


def test_cutout_erases_one_clipped_square_to_the_mean():
    x = torch.ones(32, 1, 10, 10)
    out, _ = build_augment(_only(cutout=1.0, cutout_size=4), GRAY)(x, torch.zeros(32).long(),
                                                                    _gen())
    for img in out[:, 0]:
        erased = (img == 0).nonzero()
        rows, cols = erased[:, 0], erased[:, 1]
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(erased) == height * width and 1 <= height <= 4 and 1 <= width <= 4
    assert ((out == 0).flatten(1).sum(1) == 16).float().mean() > 0.3  # most lie inside


def test_noise_has_the_requested_std():
    x = torch.zeros(64, 1, 16, 16)
    out, _ = build_augment(_only(noise=0.3), GRAY)(x, torch.zeros(64).long(), _gen())
    assert out.std().item() == pytest.approx(0.3, rel=0.05)


SIGNAL = Context(channels=1, num_classes=4, mean=(0.0,), std=(1.0,), shape=(1, 40),
                 value_range=(-3.0, 3.0))
ROWS = Context(channels=13, num_classes=3, mean=(0.0,) * 13, std=(1.0,) * 13, shape=(13,),
               value_range=(-2.0, 4.0))


def test_the_default_shift_is_for_images_only():
    assert build_augment({}, GRAY).names == ["shift"]  # null: 2 px on images
    assert build_augment({}, SIGNAL).names == [] and build_augment({}, ROWS).names == []
    x = torch.randn(4, 1, 40)
    out, _ = build_augment({"mixup": 0.2, "noise": 0.1}, SIGNAL)(x, torch.arange(4) % 4, _gen())
    assert out.shape == x.shape  # mixup and noise work on any shape


@pytest.mark.parametrize("ctx", [SIGNAL, ROWS], ids=["sequence", "tabular"])
@pytest.mark.parametrize("name", ["hflip", "vflip", "shift", "brightness", "contrast",
                                  "saturation", "hue", "cutout", "cutmix"])
def test_image_options_are_refused_on_other_data(ctx, name):
    value = 1 if name == "shift" else 0.5
    with pytest.raises(TrainerError, match=rf"^augment\.{name}: an image augmentation, but the "
                                           rf"data are (sequences|rows of features) of shape"):
        build_augment(_only(**{name: value}), ctx)


def test_colour_jitter_is_refused_on_images_outside_the_unit_range():
    standardised = Context(channels=1, num_classes=4, mean=(0.0,), std=(1.0,),
                           shape=(1, 8, 8), value_range=(-1.5, 2.5))
    with pytest.raises(TrainerError, match=r"augment\.brightness: works on pixel values in "
                                           r"\[0, 1\].*from -1\.5 to 2\.5"):
        build_augment(_only(brightness=0.3), standardised)
    assert build_augment(_only(shift=2), standardised).names == ["shift"]
