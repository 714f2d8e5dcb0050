"""vrlic.codec.rate: the coder-mirroring estimate is within a few bytes of the real file."""
import pytest
import torch

from vrlic.codec.quantization import PAPER_LAMBDAS
from vrlic.codec.rate import estimate_bits, likelihood_bits, table_code_bits
from vrlic.codec.vbr import build_vr_model


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"])
def test_estimate_matches_the_file(arch):
    torch.manual_seed(0)
    m = build_vr_model(arch, 16, 16, lambdas=PAPER_LAMBDAS, vr_hyper=arch != "mbt2018", offsets=True).eval()
    x = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    for step in (0.02, 0.1, 0.5):  # 0.02: many symbols beyond their tables (escapes)
        enc = m.compress(x, step)
        actual = 8 * sum(len(s) for ss in enc["strings"] for s in ss)
        est = estimate_bits(m, x, step)
        assert abs(est["total"] - actual) <= 64 + 0.002 * actual, (step, est, actual)
        lik = likelihood_bits(m, x, step)
        assert lik["total"] > 0 and set(lik) >= {"y", "z", "at_floor"}
    assert m.training is False


def test_escape_cost_follows_the_bypass_code():
    from compressai.entropy_models import GaussianConditional
    from compressai.models.base import get_scale_table

    gc = GaussianConditional(None)
    gc.update_scale_table(get_scale_table(), force=True)
    idx = torch.zeros(4, dtype=torch.int32)  # the narrowest table: symbols -1..1
    bits, esc = table_code_bits(torch.tensor([0, 1, 5, -300]), idx, gc)
    assert esc.tolist() == [False, False, True, True]
    escape_bin = bits[2] - 4 * 2  # value 5 → raw 6: one 4-bit digit, plus the digit count
    assert torch.isclose(bits[3] - escape_bin, torch.tensor(4.0 * (1 + 3), dtype=bits.dtype))  # raw 597: 3 digits
