"""One array against its reference (gradconf.compare): the numbers a record states."""
import numpy as np

from gradconf.compare import compare
from gradconf.tolerance import Allowance

ALLOW = Allowance(rtol=1e-3, atol=1e-6)


def test_the_worst_element_is_the_one_furthest_beyond_its_own_allowance():
    desired = np.array([[100.0, 1.0], [0.0, -2.0]])
    actual = desired + np.array([[0.05, 0.0], [3e-6, 0.0]])  # 0.05 is within 100's 0.1; 3e-6 is not within 1e-6
    c = compare(actual, desired, ALLOW)
    assert not c.ok and c.worst_index == [1, 0] and np.isclose(c.ratio, 3.0)
    assert (c.actual, c.desired) == (3e-6, 0.0)
    assert np.isclose(c.max_abs_err, 0.05)
    assert np.isclose(c.max_rel_err, 0.05 / 100)  # the zero's error is absolute only: not in the relative one
    assert c.message.startswith("1 of 4 element(s) off; worst at [1, 0]")


def test_measured_slack_widens_the_allowance_elementwise():
    desired, actual = np.zeros(3), np.array([0.0, 5e-6, 5e-6])
    c = compare(actual, desired, ALLOW, extra_atol=np.array([0.0, 1e-5, 0.0]))
    assert not c.ok and c.worst_index == [2]


def test_a_reference_of_zeros_has_the_absolute_error_as_its_relative_one():
    c = compare(np.array([1e-7, -2e-7]), np.zeros(2), ALLOW)
    assert c.ok and c.max_rel_err == 2e-7 == c.max_abs_err


def test_a_non_finite_value_where_the_reference_is_finite_is_named():
    c = compare(np.array([1.0, np.nan, np.inf]), np.array([1.0, 2.0, 3.0]), ALLOW)
    assert not c.ok and c.non_finite and c.worst_index == [1] and c.desired == 2.0
    assert c.message.startswith("2 non-finite value(s) (nan at [1]")


def test_a_difference_that_overflows_fails_without_blaming_an_inf_on_the_framework():
    with np.errstate(over="ignore"):
        c = compare(np.array([1.7e308]), np.array([-1.7e308]), ALLOW)
    assert not c.ok and not c.non_finite and c.max_abs_err == np.inf


def test_an_inf_that_the_reference_has_too_is_not_a_non_finite_failure():
    with np.errstate(invalid="ignore"):
        c = compare(np.array([np.inf, 1.0]), np.array([np.inf, 1.0]), ALLOW)
    assert not c.non_finite  # inf - inf is NaN: judged, not called the framework's own inf


def test_shapes_that_differ_are_said_and_one_element_of_any_shape_is_a_scalar():
    assert "shape [3] != reference shape [2]" in compare(np.zeros(3), np.zeros(2), ALLOW).message
    assert compare(np.array([[1.0]]), np.array(1.0), ALLOW).ok
