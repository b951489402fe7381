"""Regenerates data/demo_bank.json: one answerable multiple-choice question per item of
data/demo_pool.csv (seeded; run from the repository root, or import :func:`build_bank`).

Each question matches its pool row's item_id and topic; its difficulty level follows the
row's b (harder b, bigger numbers and more steps): level 0 for b < -1.5, 1 below -0.5,
2 below 0.5, 3 below 1.5, 4 above. Answers are computed exactly with fractions; the three
distractors are the slips learners make (a dropped carry, a wrong conversion factor,
numerators and denominators added), padded with near misses. Options are shuffled.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "data" / "demo_pool.csv"
BANK = ROOT / "data" / "demo_bank.json"
SEED = 20261124
LEVEL_CUTS = (-1.5, -0.5, 0.5, 1.5)
LABELS = "ABCD"


def level_of(b: float) -> int:
    return int(np.searchsorted(LEVEL_CUTS, b, side="right"))


def difficulty_label(b: float) -> str:
    return "easy" if b < -0.5 else ("medium" if b <= 0.5 else "hard")


def fmt(value: Fraction) -> str:
    """A terminating decimal (or integer) exactly; raises if the value does not terminate."""
    value = Fraction(value)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for places in range(7):
        scaled = value * 10**places
        if scaled.denominator == 1:
            digits = str(scaled.numerator).rjust(places + 1, "0")
            text = digits if places == 0 else f"{digits[:-places]}.{digits[-places:]}"
            return sign + text
    raise ValueError(f"{value} has no short decimal form")


def ffrac(value: Fraction) -> str:
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _percent(value: Fraction) -> str:
    return f"{fmt(value)}%"


def _digits(rng, n: int) -> int:
    return int(rng.integers(10 ** (n - 1) if n > 1 else 2, 10**n))


def _renders(value: Fraction, render) -> bool:
    try:
        render(value)
    except ValueError:
        return False
    return True


def _distractors(
    correct: Fraction, candidates, rng, step: Fraction, positive: bool = True, render=fmt
) -> list[Fraction]:
    """Three distinct wrong answers: the candidates that render, then ``correct +- k step``."""
    out: list[Fraction] = []

    def take(value):
        value = Fraction(value)
        if value != correct and value not in out and (value > 0 or not positive) and _renders(value, render):
            out.append(value)

    for value in candidates:
        take(value)
    k = 1
    while len(out) < 3:
        for value in (correct + k * step, correct - k * step):
            if len(out) < 3:
                take(value)
        k += 1
    picked = rng.permutation(len(out))[:3] if len(out) > 3 else range(len(out))
    return [out[i] for i in picked]


# ------------------------------------------------------------------ topics
def _addition(level, rng):
    sizes = [(1, 1), (2, 2), (3, 3), (4, 3, 2), (4, 4, 3)][level]
    terms = [Fraction(_digits(rng, n)) for n in sizes]
    if level == 4:
        terms = [t / 100 for t in terms]  # two decimal places
    total = sum(terms)
    no_carry = Fraction(
        int(
            "".join(
                str(sum(int(d) for d in digits) % 10)
                for digits in zip(*[str(int(t * (100 if level == 4 else 1))).rjust(6, "0") for t in terms])
            )
        )
    )
    no_carry = no_carry / (100 if level == 4 else 1)
    unit = Fraction(1, 100) if level == 4 else Fraction(1)
    wrong = _distractors(
        total, [no_carry, total + 10 * unit, total - 10 * unit, total + 100 * unit], rng, unit
    )
    expr = " + ".join(fmt(t) for t in terms)
    rationale = (
        f"Line up the place values and add column by column, carrying tens: {expr} = {fmt(total)}. "
        "Forgetting a carry gives a total that is too small."
    )
    return f"What is {expr}?", total, wrong, fmt, rationale


def _subtraction(level, rng):
    sizes = [(2, 1), (2, 2), (3, 3), (4, 3), (3, 3)][level]
    x, y = (Fraction(_digits(rng, n)) for n in sizes)
    if level == 0:
        top = int(rng.integers(11, 19))
        x, y = Fraction(top), Fraction(int(rng.integers(top - 9, 10)))
    elif level == 4:
        x, y = min(x, y), max(x, y) + 1  # a negative result
    elif x < y:
        x, y = y, x
    diff = x - y
    no_borrow = Fraction(
        int(
            "".join(
                str(abs(int(a) - int(b)))
                for a, b in zip(str(int(max(x, y))).rjust(4, "0"), str(int(min(x, y))).rjust(4, "0"))
            )
        )
    )
    if diff < 0:
        no_borrow = -no_borrow
    wrong = _distractors(diff, [no_borrow, -diff, diff + 10, diff - 1], rng, Fraction(1), positive=False)
    rationale = (
        f"Subtract place by place, borrowing when the top digit is smaller: {fmt(x)} - {fmt(y)} = {fmt(diff)}."
        + (" The second number is larger, so the result is negative." if diff < 0 else "")
    )
    return f"What is {fmt(x)} - {fmt(y)}?", diff, wrong, fmt, rationale


def _multiplication(level, rng):
    sizes = [(1, 1), (2, 1), (2, 2), (3, 2), (3, 3)][level]
    x, y = (Fraction(_digits(rng, n)) for n in sizes)
    product = x * y
    # A partial product left unshifted is the classic long-multiplication slip.
    tens, units = divmod(int(y), 10)
    unshifted = x * units + x * tens if tens else product + x
    wrong = _distractors(product, [unshifted, product + x, product - x, product + 10], rng, Fraction(10))
    rationale = f"{fmt(x)} × {fmt(y)} = {fmt(product)} (multiply by each digit of {fmt(y)}, shift by place value, add)."
    return f"What is {fmt(x)} × {fmt(y)}?", product, wrong, fmt, rationale


def _division(level, rng):
    if level == 4:
        divisor = Fraction(int(rng.choice([4, 8, 16, 20, 25, 40])))
        dividend = Fraction(int(rng.integers(101, 999)))
        while (dividend / divisor).denominator == 1:
            dividend += 1
    else:
        divisor_size, quotient_size = [(1, 1), (1, 2), (2, 2), (2, 3)][level]
        divisor = Fraction(_digits(rng, divisor_size))
        dividend = divisor * _digits(rng, quotient_size)
    quotient = dividend / divisor
    wrong = _distractors(
        quotient, [quotient + 1, quotient - 1, quotient * 10, quotient / 10], rng, Fraction(1)
    )
    rationale = f"{fmt(dividend)} ÷ {fmt(divisor)} = {fmt(quotient)}, since {fmt(quotient)} × {fmt(divisor)} = {fmt(dividend)}."
    return f"What is {fmt(dividend)} ÷ {fmt(divisor)}?", quotient, wrong, fmt, rationale


def _fraction(rng, low, high):
    d = int(rng.integers(low, high + 1))
    n = int(rng.integers(1, d))
    return Fraction(n, d), f"{n}/{d}"


def _fractions(level, rng):
    ops = ["+", "+", "+", "-", "×"]
    op = ops[level]
    while True:
        if level == 0:
            d = int(rng.integers(3, 10))
            n1, n2 = (int(v) for v in rng.integers(1, d, 2))
            (x, xs), (y, ys) = (Fraction(n1, d), f"{n1}/{d}"), (Fraction(n2, d), f"{n2}/{d}")
        elif level == 1:
            d = int(rng.choice([2, 3, 4]))
            m = int(rng.choice([2, 3]))
            n1, n2 = int(rng.integers(1, d)), int(rng.integers(1, d * m))
            (x, xs), (y, ys) = (Fraction(n1, d), f"{n1}/{d}"), (Fraction(n2, d * m), f"{n2}/{d * m}")
        else:
            low, high = [None, None, (5, 12), (8, 16), (11, 19)][level]
            (x, xs), (y, ys) = _fraction(rng, low, high), _fraction(rng, low, high)
        if op == "-" and x < y:
            (x, xs), (y, ys) = (y, ys), (x, xs)
        if x != y or op != "-":
            break
    result = {"+": x + y, "-": x - y, "×": x * y}[op]
    naive = {
        "+": Fraction(x.numerator + y.numerator, x.denominator + y.denominator),
        "-": Fraction(max(x.numerator - y.numerator, 1), max(abs(x.denominator - y.denominator), 1)),
        "×": x * y * 2,
    }[op]
    other = {"+": x - y if x != y else x * y, "-": x + y, "×": x + y}[op]
    wrong = _distractors(
        result,
        [naive, other, result + Fraction(1, result.denominator)],
        rng,
        Fraction(1, max(result.denominator, 2)),
        render=ffrac,
    )
    how = {
        "+": "write both over a common denominator and add the numerators",
        "-": "write both over a common denominator and subtract the numerators",
        "×": "multiply the numerators and the denominators",
    }[op]
    rationale = f"To combine {xs} {op} {ys}, {how}: the result in lowest terms is {ffrac(result)}."
    return f"What is {xs} {op} {ys}? Give the answer in lowest terms.", result, wrong, ffrac, rationale


def _percentages(level, rng):
    if level <= 2:
        pct = int(rng.choice([[10, 50], [20, 25, 75], [15, 35, 45, 65]][level]))
        base = [
            int(rng.integers(2, 10)) * 10,
            int(rng.integers(5, 50)) * 20,
            int(rng.integers(50, 500)) * 20,
        ][level]
        answer = Fraction(pct * base, 100)
        wrong = _distractors(
            answer, [Fraction(base, pct), answer * 10, Fraction(base * (100 - pct), 100)], rng, Fraction(5)
        )
        rationale = f"{pct}% means {pct}/100, and {pct}/100 × {base} = {fmt(answer)}."
        return f"What is {pct}% of {base}?", answer, wrong, fmt, rationale
    if level == 3:
        base = int(rng.choice([1250, 1600, 2400, 3200, 4800, 6400]))
        part = Fraction(base * int(rng.choice([5, 15, 35, 45, 55, 85])), 100)
        answer = part / base * 100
        wrong = _distractors(
            answer, [Fraction(base, part), answer / 10, 100 - answer], rng, Fraction(5), render=_percent
        )
        rationale = f"{fmt(part)} out of {base} is {fmt(part)}/{base} × 100% = {fmt(answer)}%."
        return f"What percentage of {base} is {fmt(part)}?", answer, wrong, _percent, rationale
    pct = int(rng.choice([12, 15, 35, 45]))
    original = Fraction(int(rng.integers(60, 490)) * 20)
    new = original * (100 - pct) / 100
    wrong = _distractors(
        original, [new * (100 + pct) / 100, new + new * pct / 100, new / (100 + pct) * 100], rng, Fraction(10)
    )
    rationale = (
        f"After a {pct}% discount the price is {100 - pct}% of the original, so the original is "
        f"{fmt(new)} ÷ {fmt(Fraction(100 - pct, 100))} = {fmt(original)}. Adding {pct}% of {fmt(new)} is wrong: "
        "the percentage was taken of the original price."
    )
    return (
        f"After a {pct}% discount a jacket costs {fmt(new)}. What was the original price?",
        original,
        wrong,
        fmt,
        rationale,
    )


UNITS = {
    "length-units": {
        "millimetres": Fraction(1, 1000),
        "centimetres": Fraction(1, 100),
        "metres": Fraction(1),
        "kilometres": Fraction(1000),
    },
    "mass-units": {
        "milligrams": Fraction(1, 1000),
        "grams": Fraction(1),
        "kilograms": Fraction(1000),
        "tonnes": Fraction(1_000_000),
    },
}
UNIT_STEPS = {
    "length-units": [
        ("metres", "centimetres"),
        ("kilometres", "metres"),
        ("centimetres", "metres"),
        ("millimetres", "metres"),
        ("kilometres", "centimetres"),
    ],
    "mass-units": [
        ("kilograms", "grams"),
        ("grams", "milligrams"),
        ("grams", "kilograms"),
        ("milligrams", "grams"),
        ("tonnes", "grams"),
    ],
}


def _units(topic):
    def make(level, rng):
        src, dst = UNIT_STEPS[topic][level]
        factor = UNITS[topic][src] / UNITS[topic][dst]
        if factor > 1:
            amount = Fraction(
                int(rng.integers(2, 10 ** (1 + level // 2))), 4 if level >= 3 else 2 if level else 1
            )
        else:
            amount = Fraction(_digits(rng, 2 + level))
        answer = amount * factor
        ten = Fraction(10)
        wrong = _distractors(
            answer,
            [answer / ten, answer * ten, amount / factor if factor != 1 else amount + 1],
            rng,
            max(answer / 10, Fraction(1, 100)),
        )
        scale = fmt(factor) if factor > 1 else fmt(1 / factor)
        big, small = (src, dst) if factor > 1 else (dst, src)
        rationale = (
            f"1 {big[:-1]} = {scale} {small}, so {fmt(amount)} {src} = {fmt(amount)} "
            f"{'×' if factor > 1 else '÷'} {scale} = {fmt(answer)} {dst}."
        )
        return f"How many {dst} are in {fmt(amount)} {src}?", answer, wrong, fmt, rationale

    return make


GENERATORS = {
    "addition": _addition,
    "subtraction": _subtraction,
    "multiplication": _multiplication,
    "division": _division,
    "fractions": _fractions,
    "percentages": _percentages,
    "length-units": _units("length-units"),
    "mass-units": _units("mass-units"),
}


def build_item(item_id: str, topic: str, b: float, rng: np.random.Generator) -> dict:
    """One question for a pool row; ``rng`` is the row's own generator."""
    if topic not in GENERATORS:
        raise ValueError(f"{item_id}: topic {topic!r} has no generator; known: {sorted(GENERATORS)}")
    level = level_of(b)
    stem, answer, wrong, render, rationale = GENERATORS[topic](level, rng)
    values = [answer, *wrong]
    order = rng.permutation(4)
    options = [
        {"label": LABELS[k], "text_md": render(values[i]), "is_correct": bool(i == 0)}
        for k, i in enumerate(order)
    ]
    texts = [o["text_md"] for o in options]
    if len(set(texts)) != 4:
        raise AssertionError(f"{item_id}: duplicate option texts {texts}")
    return {
        "item_id": item_id,
        "topic": topic,
        "level": level,
        "difficulty_label": difficulty_label(b),
        "stem_md": stem,
        "lead_in": "Choose one answer.",
        "options": options,
        "rationale_md": rationale,
    }


def build_bank(pool_path=POOL, seed: int = SEED) -> dict:
    """The whole bank as a JSON-able dict (items in pool order)."""
    pool = pd.read_csv(pool_path, dtype={"item_id": str, "topic": str})
    children = np.random.default_rng(seed).spawn(len(pool))
    items = [
        build_item(row.item_id, row.topic, float(row.b), rng)
        for row, rng in zip(pool.itertuples(index=False), children)
    ]
    return {
        "schema": "qbank.demo-bank/1",
        "exam_code": "DEMO-EXAM",
        "seed": seed,
        "pool_file": "data/demo_pool.csv",
        "pool_sha256": hashlib.sha256(Path(pool_path).read_bytes()).hexdigest(),
        "items": items,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=str(POOL))
    parser.add_argument("--out", default=str(BANK))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    bank = build_bank(args.pool, args.seed)
    Path(args.out).write_text(json.dumps(bank, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(bank['items'])} items to {args.out}")


if __name__ == "__main__":
    main()
