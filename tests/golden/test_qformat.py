import numpy as np
import pytest

from deltanet_hw.qformat import QFormat, shift_round


def test_text_round_trip():
    for text in ("Q4.11", "UQ1.15", "Q0.15:truncate", "Q7.24:half_up:wrap", "Q-2.17"):
        assert str(QFormat.parse(text)) == text
    f = QFormat.parse("Q4.11")
    assert (f.width, f.min_raw, f.max_raw, f.lsb) == (16, -32768, 32767, 2**-11)
    assert QFormat.parse("UQ1.15").width == 16 and QFormat.parse("UQ1.15").min_raw == 0


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("Q4", "a format looks like"),
        ("Q4.11:round", "unknown format option 'round'"),
        ("Q40.20", r"width .* must be in \[1, 53\]"),
        ("Q-5.3", r"width .* must be in"),
    ],
)
def test_bad_formats(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        QFormat.parse(text)
    with pytest.raises(ValueError, match="rounding must be one of"):
        QFormat(1, 2, rounding="nearest")


def test_rounding_modes_on_ties():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.75])
    even, _ = QFormat(3, 0).from_float(x)
    up, _ = QFormat(3, 0, rounding="half_up").from_float(x)
    trunc, _ = QFormat(3, 0, rounding="truncate").from_float(x)
    np.testing.assert_array_equal(even, [-2, -2, 0, 0, 2, 2, 1])
    np.testing.assert_array_equal(up, [-2, -1, 0, 1, 2, 3, 1])
    np.testing.assert_array_equal(trunc, [-3, -2, -1, 0, 1, 2, 0])
    # the integer path rounds exactly like the float path
    raw = np.arange(-64, 65)
    for mode in ("half_even", "half_up", "truncate"):
        f = QFormat(7, 0, rounding=mode)
        np.testing.assert_array_equal(f.requantize(raw, 3)[0], f.from_float(raw / 8)[0])


def test_shift_round_with_array_shifts():
    np.testing.assert_array_equal(
        shift_round(np.array([6, 6, 6, 3]), np.array([0, 1, 2, -1])), [6, 3, 2, 6]
    )


def test_saturate_counts_and_wrap():
    f = QFormat(1, 2)  # [-2, 1.75]
    raw, over = f.from_float([1.0, 5.0, -9.0, 1e300])
    np.testing.assert_array_equal(raw, [4, 7, -8, 7])
    assert over == 3
    w = QFormat(1, 2, overflow="wrap")
    raw, over = w.from_float([2.0, -2.25])
    np.testing.assert_array_equal(raw, [-8, 7])
    assert over == 2


def test_nan_inf_refused_and_exact_back_conversion():
    f = QFormat(4, 11)
    with pytest.raises(ValueError, match="my input contains NaN or Inf"):
        f.from_float([1.0, np.nan], "my input")
    raw = np.arange(f.min_raw, f.max_raw + 1)
    back, over = f.from_float(f.to_float(raw))
    np.testing.assert_array_equal(back, raw)
    assert over == 0
    assert f.const(0.5) == 1024
    with pytest.raises(ValueError, match="does not fit"):
        f.const(100.0)
