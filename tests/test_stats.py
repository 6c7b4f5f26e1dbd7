import numpy as np
import pytest
from scipy import stats as sps

from torchref import stats


def test_hedges_g_and_welch_against_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 40), rng.normal(0.5, 1, 40)
    c = stats.compare(a, b)
    assert c.welch_p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    d = (a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    assert c.hedges_g == pytest.approx(d * (1 - 3 / (4 * 80 - 9)))


def test_tost_declares_equivalence_of_same_distribution_and_not_of_shifted():
    rng = np.random.default_rng(1)
    same = [stats.compare(rng.normal(0, 1, 64), rng.normal(0, 1, 64)).tost_p < 0.05 for _ in range(200)]
    shifted = [stats.compare(rng.normal(0, 1, 64), rng.normal(1.5, 1, 64)).tost_p < 0.05 for _ in range(200)]
    assert np.mean(same) > 0.85  # power at margin 0.75 SD, n = 64
    assert np.mean(shifted) < 0.01


def test_tost_size_at_the_margin_is_at_most_alpha():
    rng = np.random.default_rng(2)
    # true difference exactly at the margin (0.75 SD): equivalence may be declared at most ~5% of the time
    hits = [stats.tost(rng.normal(0, 1, 200), rng.normal(0.75, 1, 200), 0.75) < 0.05 for _ in range(400)]
    assert np.mean(hits) < 0.08


def test_holm():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(stats.holm([0.5]), [0.5])


def test_compare_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 3"):
        stats.compare([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-finite"):
        stats.compare([1, 2, np.nan], [1, 2, 3])
