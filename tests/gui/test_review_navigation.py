"""The review order and its filters (no Qt): planted hierarchies and statuses, exact answers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from insight_desktop.core.curation import Curation
from insight_desktop.gui.review.navigation import (
    FREQUENCY_ORDER,
    ReviewFilter,
    ReviewNavigator,
    frequency_order,
    tree_order,
)


def test_tree_order_is_depth_first_and_survives_a_cycle():
    #      0        3
    #     / \       |
    #    1   4      5
    #    |
    #    2
    assert tree_order(np.array([-1, 0, 1, -1, 0, 3])).tolist() == [0, 1, 2, 4, 3, 5]
    # 0 → 1 → 0 is a cycle (a malformed file): every concept is still visited once
    order = tree_order(np.array([1, 0, -1]))
    assert sorted(order.tolist()) == [0, 1, 2] and order[0] == 2


def test_frequency_order_most_frequent_first_ties_by_id():
    assert frequency_order(np.array([0.1, 0.3, 0.1, 0.5])).tolist() == [3, 1, 0, 2]


def navigator(statuses: dict[int, str]):
    relations = SimpleNamespace(level=np.array([1, 2, 3, 1, 2, 2]), display_parent=np.array([-1, 0, 1, -1, 0, 3]),
                                frequency=np.array([0.6, 0.5, 0.1, 0.4, 0.3, 0.2]))
    curation = Curation("ab" * 32, 6, user="t")
    for j, status in statuses.items():
        curation.set_status([j], status)
    return ReviewNavigator(SimpleNamespace(relations=relations), curation)


def test_steps_filters_and_next_unreviewed():
    nav = navigator({1: "accepted", 4: "rejected", 5: "rejected"})   # tree order: 0 1 2 4 3 5
    assert nav.first() == 0 and nav.step(0, +1) == 1 and nav.step(0, -1) == 5   # wraps round
    assert nav.next_unreviewed(0) == 2 and nav.next_unreviewed(2) == 3 and nav.next_unreviewed(3) == 0
    nav.filter = ReviewFilter("rejected")
    assert nav.step(0, +1) == 4 and nav.step(4, +1) == 5 and nav.step(5, +1) == 4
    assert nav.step(1, +1) == 4                  # from a concept the filter hides: on from its place
    nav.filter = ReviewFilter(level=2)
    assert [nav.step(j, +1) for j in (1, 4, 5)] == [4, 5, 1] and nav.count() == 3
    nav.filter = ReviewFilter("flagged")
    assert nav.first() == -1 and nav.step(0, +1) == -1
    nav.filter, nav.order_name = ReviewFilter(), FREQUENCY_ORDER
    assert [nav.step(j, +1) for j in (0, 1, 3, 4, 5)] == [1, 3, 4, 5, 2]
