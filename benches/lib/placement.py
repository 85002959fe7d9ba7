"""Core placement labels for the loopback benchmark (benches/loopback.sh).

`uswitch-c2c` samples the round trip between CPU 0 and CPU 1 (ns) about once a second in each
case's window. On a VM the host may move the two vCPUs between cores that share an L3 ("near",
~65-90 ns on an AMD EPYC guest) and cores that do not ("far", ~300-440 ns); rates differ ~2x
between the two, so figures are only compared within one placement.

Rules this module enforces:
- The near/far split comes from the whole benchmark run's samples: the geometric middle of the
  largest jump (by ratio) between consecutive sorted samples, if that jump is at least 2x and
  each side of it holds at least `min_side(n)` samples (max(2, 5 % of them)): one outlying
  sample (a 933 ns probe once made every far run "near") cannot be a level of its own.
- No such jump (one level): a fixed 150 ns, so a run kept on far cores all along is not near.
- A case is "near" when all its samples are under the split, "far" when none is, else "mixed".

Run as a script for its self-test (scripts/test.sh does).
"""

FIXED_SPLIT_NS = 150.0
MIN_JUMP = 2.0


def min_side(n):
    """Samples each level must hold for a jump to separate two levels."""
    return max(2, -(-n * 5 // 100))


def split_of(samples):
    """(split ns, why) for a benchmark run's c2c samples; (None, "") when there are none."""
    allp = sorted(x for x in samples if x > 0)
    if not allp:
        return None, ""
    need = min_side(len(allp))
    best = None
    for j in range(need - 1, len(allp) - need):
        gap = allp[j + 1] / allp[j]
        if best is None or gap > best[0]:
            best = (gap, j)
    if best is not None and best[0] >= MIN_JUMP:
        j = best[1]
        return ((allp[j] * allp[j + 1]) ** 0.5,
                "the middle of the largest jump between this benchmark run's samples")
    return FIXED_SPLIT_NS, "a fixed split: this benchmark run's samples show one level"


def placement(samples, split):
    """"near", "far" or "mixed" for one case's samples; None without samples or split."""
    if not samples or split is None:
        return None
    near = sum(1 for x in samples if x < split)
    return "near" if near == len(samples) else "far" if near == 0 else "mixed"


def _self_test():
    near = [65.0 + k for k in range(20)]
    far = [300.0 + 5 * k for k in range(20)]
    # Two levels: split between them.
    s, why = split_of(near + far)
    assert 84 < s < 300 and "jump" in why, (s, why)
    assert placement(near[:5], s) == "near" and placement(far[:5], s) == "far"
    assert placement([near[0], far[0]], s) == "mixed"
    # One outlier above the far level must not become the split (it once labelled far runs near).
    s, _ = split_of(near + far + [933.0])
    assert 84 < s < 300, s
    assert placement(far, s) == "far"
    # All far plus one outlier: one level, fixed split, far stays far.
    s, why = split_of(far + [933.0])
    assert s == FIXED_SPLIT_NS and "fixed" in why, (s, why)
    assert placement(far, s) == "far"
    # All near: fixed split, near.
    s, _ = split_of(near)
    assert s == FIXED_SPLIT_NS and placement(near, s) == "near"
    # A low outlier (SMT sibling) alone is not a level either.
    s, _ = split_of([28.0] + far)
    assert s == FIXED_SPLIT_NS and placement(far, s) == "far"
    # Two samples per level are enough for a short run.
    s, _ = split_of([70.0, 75.0, 320.0, 330.0])
    assert 75 < s < 320, s
    # Nothing sampled.
    assert split_of([]) == (None, "") and placement([], 150.0) is None
    assert min_side(10) == 2 and min_side(100) == 5 and min_side(101) == 6
    print("placement.py: self-test ok")


if __name__ == "__main__":
    _self_test()
