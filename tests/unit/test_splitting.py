"""Split protocols: RecBole's per-user ratio split, the stratified split, the default holdout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicrec.data.splitting import (
    TEST,
    TRAIN,
    VALID,
    assign_parts,
    holdout_counts,
    ratio_counts,
    split_parts,
    stratified_counts,
)

# RecBole's 8:1:1 (``Dataset._calcu_split_ids``): validation and test get int(0.1 * n) rows
# each, train the rest; below 10 rows a part whose 0.1 * n is under one row gets one row from
# train, test first, as long as train keeps more than one.
RECBOLE_811 = {
    1: (1, 0, 0),
    2: (1, 0, 1),
    3: (1, 1, 1),
    4: (2, 1, 1),
    9: (7, 1, 1),
    10: (8, 1, 1),
    11: (9, 1, 1),
    19: (17, 1, 1),
    20: (16, 2, 2),
    29: (25, 2, 2),
    30: (24, 3, 3),
    49: (41, 4, 4),
    50: (40, 5, 5),
}


def test_ratio_counts_follow_recboles_rounding() -> None:
    sizes = np.array(sorted(RECBOLE_811))
    counts = ratio_counts(sizes, (0.8, 0.1, 0.1))
    assert [tuple(row) for row in counts] == [RECBOLE_811[n] for n in sizes]


def test_ratio_counts_of_a_two_part_split_and_unnormalized_ratios() -> None:
    # 8:2 -> test int(0.2 n); 1 row stays in train; 2..4 rows give test one row.
    assert ratio_counts(np.array([1, 2, 4, 5, 10]), (0.8, 0.2)).tolist() == [
        [1, 0],
        [1, 1],
        [3, 1],
        [4, 1],
        [8, 2],
    ]
    # Shares are normalized by their sum, as RecBole does.
    sizes = np.arange(1, 200)
    assert np.array_equal(ratio_counts(sizes, (8, 1, 1)), ratio_counts(sizes, (0.8, 0.1, 0.1)))


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 500), min_size=1, max_size=50),
    ratios=st.tuples(st.floats(0.05, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
)
def test_ratio_counts_partition_every_user_and_keep_a_train_row(
    sizes: list[int], ratios: tuple[float, float, float]
) -> None:
    n = np.array(sizes)
    counts = ratio_counts(n, ratios)
    assert np.array_equal(counts.sum(axis=1), n)
    assert (counts >= 0).all()
    assert (counts[:, 0] >= 1).all()
    shares = np.array(ratios) / sum(ratios)
    # Parts after the first get their floor share, or one more row when that share is under 1.
    floor = np.floor(shares[None, 1:] * n[:, None])
    assert ((counts[:, 1:] == floor) | ((counts[:, 1:] == 1) & (floor == 0))).all()


def test_stratified_counts_round_the_train_share_half_to_even() -> None:
    counts = stratified_counts(np.array([1, 2, 4, 6, 10, 20, 21]), 0.25)
    assert counts[:, 1].tolist() == [0] * 7  # no validation part
    # 0.75 n = 0.75, 1.5, 3, 4.5, 7.5, 15, 15.75 -> 1, 2, 3, 4, 8, 15, 16 train rows
    assert counts[:, 0].tolist() == [1, 2, 3, 4, 8, 15, 16]
    assert (counts.sum(axis=1) == [1, 2, 4, 6, 10, 20, 21]).all()


def test_stratified_keeps_a_train_row_even_for_large_test_fractions() -> None:
    counts = stratified_counts(np.array([1, 2, 3]), 0.9)
    assert counts[:, 0].tolist() == [1, 1, 1]


def test_assign_parts_gives_each_user_its_counts_in_random_order() -> None:
    sizes = np.arange(1, 60)
    users = np.repeat(np.arange(len(sizes)), sizes)
    counts = ratio_counts(sizes, (0.8, 0.1, 0.1))
    parts = assign_parts(users, counts, np.random.default_rng(3))
    for part in (TRAIN, VALID, TEST):
        assert np.array_equal(
            np.bincount(users[parts == part], minlength=len(sizes)), counts[:, part]
        )
    again = assign_parts(users, counts, np.random.default_rng(3))
    other = assign_parts(users, counts, np.random.default_rng(4))
    assert np.array_equal(parts, again) and not np.array_equal(parts, other)
    # Within a user the test rows are not simply the last rows of the input.
    last_rows = np.r_[np.cumsum(sizes)[sizes >= 10] - 1]
    assert (parts[last_rows] != TEST).any()


def test_assign_parts_by_time_puts_the_latest_rows_last() -> None:
    users = np.repeat([0, 1], 10)
    stamps = np.r_[np.arange(10), np.arange(10)[::-1]]
    counts = ratio_counts(np.array([10, 10]), (0.8, 0.1, 0.1))
    parts = assign_parts(users, counts, np.random.default_rng(0), order_key=stamps)
    assert stamps[:10][parts[:10] == TEST].tolist() == [9]
    assert stamps[:10][parts[:10] == VALID].tolist() == [8]
    assert stamps[10:][parts[10:] == TEST].tolist() == [9]


@pytest.mark.parametrize("protocol", ["holdout", "ratio", "stratified"])
def test_split_parts_counts_match_the_protocol(protocol: str) -> None:
    sizes = np.array([1, 2, 3, 7, 10, 33, 50])
    users = np.repeat(np.arange(len(sizes)), sizes)
    parts = split_parts(users, protocol, np.random.default_rng(0), test_fraction=0.25)
    expected = {
        "holdout": holdout_counts(sizes, 0.25),
        "ratio": ratio_counts(sizes, (0.8, 0.1, 0.1)),
        "stratified": stratified_counts(sizes, 0.25),
    }[protocol]
    got = np.stack([np.bincount(users[parts == p], minlength=len(sizes)) for p in range(3)], 1)
    assert np.array_equal(got, expected)
