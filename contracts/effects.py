"""Group-comparison effect sizes shared by the plugins that compare groups
(group_differences on an event log's durations, segment_differences on any table's
quantities), so both call a difference "large" by the same rule.

Rule (:func:`kruskal_effect`): a Kruskal-Wallis test (scipy.stats.kruskal) over the
groups, with epsilon-squared ``H / (n - 1)`` as the effect size; and, because
epsilon-squared cannot reach a large value for one deviant group among many (with k
groups and one deviant it is at most ``3p(1 - p)``, p = 1/k: 0.33 at 8 groups, below
0.26 from 12 on), the most extreme group judged alone against the rest: Vargha-Delaney
A = P(its value > a peer's) = U / (n1 n2) from a one-sided Mann-Whitney U
(scipy.stats.mannwhitneyu). A difference is large when epsilon-squared or A reaches
its threshold (0.26 and 0.71 are Vargha and Delaney's "large") with the tests'
p-values below alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, TypedDict

import numpy as np
import numpy.typing as npt
from scipy import stats

Floats = npt.NDArray[np.float64]


class GroupEffect(TypedDict):
    h: float
    p_value: float
    n: int
    epsilon_squared: float
    single_group: str
    single_group_a: float
    single_group_p_value: float


def keep_ppm(rows: int, limit: int) -> int:
    """Parts per million of rows to pre-select for a hash sample of about ``limit``
    rows (twice that, so only a small candidate set is sorted however large the table)."""
    if rows <= 2 * limit:
        return 1_000_000
    return max(1, math.ceil(2 * limit * 1_000_000 / rows))


def single_group_a(
    group: Floats, rest: Floats, alternative: Literal["greater", "less"] = "greater"
) -> tuple[float, float]:
    """Vargha-Delaney A of ``group`` against ``rest`` (P(group value > rest value),
    ties half) and the one-sided Mann-Whitney U p-value in the ``alternative``
    direction; (0.5, 1.0) when either side is empty."""
    if not group.size or not rest.size:
        return 0.5, 1.0
    res = stats.mannwhitneyu(group, rest, alternative=alternative)
    a = float(res.statistic) / (group.size * rest.size)
    return a, float(res.pvalue)


def kruskal_effect(
    labels: Sequence[str], samples: Sequence[Floats], worst: str, two_sided: bool = False
) -> GroupEffect:
    """Kruskal-Wallis over ``samples`` (one array per label, at least two, not all
    equal), epsilon-squared, and the single-group A of ``worst`` against the others
    (upwards; with ``two_sided``, in the direction of its median against theirs, A then
    being the probability of a value further that way, so always >= 0.5 for a deviant)."""
    h_res = stats.kruskal(*samples)
    h, p_value = float(h_res.statistic), float(h_res.pvalue)
    pooled = np.concatenate(list(samples))
    n = int(pooled.size)
    eps2 = h / (n - 1) if n > 1 else 0.0
    mine = samples[list(labels).index(worst)]
    rest_parts = [s for lab, s in zip(labels, samples, strict=True) if lab != worst]
    rest = np.concatenate(rest_parts) if rest_parts else np.empty(0)
    lower = two_sided and rest.size and float(np.median(mine)) < float(np.median(rest))
    if lower:
        a, p_single = single_group_a(mine, rest, "less")
        a = 1.0 - a
    else:
        a, p_single = single_group_a(mine, rest, "greater")
    return {
        "h": h,
        "p_value": p_value,
        "n": n,
        "epsilon_squared": eps2,
        "single_group": worst,
        "single_group_a": a,
        "single_group_p_value": p_single,
    }


def is_large(effect: GroupEffect, min_epsilon_squared: float, min_a: float, alpha: float) -> bool:
    """The shared decision rule: epsilon-squared or the single group's A large, and
    significant (Kruskal-Wallis p, and for A its Mann-Whitney p, below ``alpha``)."""
    large_overall = effect["epsilon_squared"] >= min_epsilon_squared
    large_single = effect["single_group_a"] >= min_a and effect["single_group_p_value"] < alpha
    return (large_overall or large_single) and effect["p_value"] < alpha
