import math

import pytest

from vrlic.bdrate import bd_rate


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
