"""Truth classification of resonance decays into JetClass classes."""

import pytest

from hepmpm.errors import HepmpmError
from hepmpm.generate.processes import PROCESSES, classify_decay, is_visible_product
from hepmpm.jetclass import CLASS_INDEX, CLASS_NAMES, parse_classes


@pytest.mark.parametrize(
    ("resonance", "products", "expected"),
    [
        (25, [5, -5], "Hbb"),
        (25, [4, -4], "Hcc"),
        (25, [21, 21], "Hgg"),
        (25, [2, -1, 1, -2], "H4q"),
        (25, [-11, 12, 1, -2], "Hqql"),
        (25, [13, -14, 3, -4], "Hqql"),
        (23, [1, -1], "Zqq"),
        (24, [2, -1], "Wqq"),
        (6, [5, 2, -1], "Tbqq"),
        (-6, [-5, 11, -12], "Tbl"),
    ],
)
def test_classify(resonance, products, expected):
    assert classify_decay(abs(resonance), products) == CLASS_INDEX[expected]


@pytest.mark.parametrize(
    ("resonance", "products"),
    [(25, [11, -11, 12, -12]), (25, [15, -15]), (6, [5, 15, -16]), (23, [12, -12]), (25, [22, 22])],
)
def test_not_a_class(resonance, products):
    assert classify_decay(resonance, products) is None


def test_every_class_has_a_process_and_order_is_jetclass():
    assert CLASS_NAMES[0] == "QCD" and CLASS_NAMES[-1] == "Tbl" and len(CLASS_NAMES) == 10
    assert set(PROCESSES) == set(CLASS_NAMES)
    assert PROCESSES["QCD"].resonance is None


def test_visible_products_exclude_neutrinos():
    assert is_visible_product(5) and is_visible_product(-13) and is_visible_product(21)
    assert not is_visible_product(12) and not is_visible_product(-16)


def test_parse_classes():
    assert parse_classes("all") == list(CLASS_NAMES)
    assert parse_classes("Tbl, QCD") == ["QCD", "Tbl"]
    with pytest.raises(HepmpmError, match="'Hxx'"):
        parse_classes("QCD,Hxx")
