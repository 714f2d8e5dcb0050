import math

import pytest

from vrlic.measure.bdrate import bd_rate


def _res(bpp, psnr):
    return {"results": {"bpp": bpp, "psnr-rgb": psnr, "ms-ssim-rgb": [1 - 10 ** (-p / 20) for p in psnr]}}


def test_identical_curves_have_zero_bd_rate():
    a = _res([0.1, 0.2, 0.4, 0.8], [28, 30, 32, 34])
    assert bd_rate(a, a) == pytest.approx(0, abs=1e-9)


def test_same_quality_at_fewer_bits_is_negative():
    a = _res([0.1, 0.2, 0.4, 0.8], [28, 30, 32, 34])
    t = _res([0.09, 0.18, 0.36, 0.72], [28, 30, 32, 34])
    assert bd_rate(a, t) == pytest.approx(-10, abs=0.01)
    assert bd_rate(a, t, "ms-ssim-rgb") == pytest.approx(-10, abs=0.01)


def test_dominated_points_are_dropped_and_degenerate_is_nan():
    a = _res([0.1, 0.2, 0.3, 0.4, 0.8], [28, 30, 29.5, 32, 34])  # 0.3 is dominated by 0.2
    t = _res([0.1, 0.2, 0.4, 0.8], [28, 30, 32, 34])
    assert math.isfinite(bd_rate(a, t))
    with pytest.warns(UserWarning):
        assert math.isnan(bd_rate(_res([0.1], [30]), t))


def _res(bpps, psnrs, per_image=None):
    r = {"results": {"bpp": bpps, "psnr-rgb": psnrs, "ms-ssim-rgb": [0.9 + 0.01 * i for i in range(len(bpps))]}}
    if per_image:
        r["per_image"] = per_image
    return r


def test_summary_spread_overlap_and_split():
    import math

    from vrlic.measure.bdrate import bd_summary, interval_text, overlap

    bpp = [0.1, 0.2, 0.4, 0.8]
    psnr = [25.0, 28.0, 31.0, 34.0]
    imgs_a = {"a": {"bpp": bpp, "psnr-rgb": psnr, "ms-ssim-rgb": [0.9, 0.92, 0.94, 0.96]},
              "b": {"bpp": bpp, "psnr-rgb": [p - 2 for p in psnr], "ms-ssim-rgb": [0.9, 0.92, 0.94, 0.96]}}
    # the test codec needs 10 % more bits on image a and 30 % more on image b
    imgs_t = {"a": {**imgs_a["a"], "bpp": [b * 1.1 for b in bpp]}, "b": {**imgs_a["b"], "bpp": [b * 1.3 for b in bpp]}}
    anchor = _res(bpp, psnr, imgs_a)
    test = _res([b * 1.2 for b in bpp], psnr, imgs_t)
    s = bd_summary(anchor, test)
    assert abs(s["pchip"] - 20.0) < 0.5 and abs(s["akima"] - 20.0) < 0.5
    assert abs(s["image_min"] - 10.0) < 0.5 and abs(s["image_max"] - 30.0) < 0.5
    assert abs(s["low_rate"] - 20.0) < 0.5 and abs(s["high_rate"] - 20.0) < 0.5
    assert s["overlap"] == 1.0
    assert interval_text(s).startswith("+20.0 [+10.0, +30.0]")
    # half the quality range shared: overlap 1/3 of the union
    assert abs(overlap(anchor, _res(bpp, [p + 4.5 for p in psnr])) - (4.5 / 13.5)) < 1e-9
    assert math.isnan(bd_summary(anchor, _res(bpp, [p + 20 for p in psnr]))["pchip"])
