"""The demo bank: one answerable question per demo-pool item, keys checked by an independent
reading of each question's text (exact arithmetic with fractions)."""

from __future__ import annotations

import ast
import importlib.util
import json
import operator
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[2]
TO_METRES_OR_GRAMS = {
    "millimetres": Fraction(1, 1000),
    "centimetres": Fraction(1, 100),
    "metres": Fraction(1),
    "kilometres": Fraction(1000),
    "milligrams": Fraction(1, 1000),
    "grams": Fraction(1),
    "kilograms": Fraction(1000),
    "tonnes": Fraction(10**6),
}
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return Fraction(str(node.value))
    raise ValueError(f"unexpected expression element {ast.dump(node)}")


def expected_answer(stem: str) -> Fraction:
    """The answer, read from the question text alone."""
    if m := re.fullmatch(r"What is (\d+)% of (\d+)\?", stem):
        return Fraction(int(m[1]) * int(m[2]), 100)
    if m := re.fullmatch(r"What percentage of ([\d.]+) is ([\d.]+)\?", stem):
        return Fraction(m[2]) / Fraction(m[1]) * 100
    if m := re.fullmatch(
        r"After a (\d+)% discount a jacket costs ([\d.]+)\. What was the original price\?", stem
    ):
        return Fraction(m[2]) / (1 - Fraction(int(m[1]), 100))
    if m := re.fullmatch(r"How many (\w+) are in ([\d.]+) (\w+)\?", stem):
        return Fraction(m[2]) * TO_METRES_OR_GRAMS[m[3]] / TO_METRES_OR_GRAMS[m[1]]
    if m := re.fullmatch(r"What is ([\d./ +×÷-]+)\?( Give the answer in lowest terms\.)?", stem):
        expression = m[1].replace("×", "*").replace("÷", "/")
        return _evaluate(ast.parse(expression, mode="eval"))
    raise AssertionError(f"no reading for {stem!r}")


@pytest.fixture(scope="module")
def bank():
    return json.loads((ROOT / "data" / "demo_bank.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pool():
    return pd.read_csv(ROOT / "data" / "demo_pool.csv", dtype={"item_id": str})


def test_one_question_per_pool_item_with_the_pool_topic(bank, pool):
    items = bank["items"]
    assert len(items) == len(pool) >= 500
    assert [i["item_id"] for i in items] == pool["item_id"].tolist()
    assert [i["topic"] for i in items] == pool["topic"].tolist()
    assert pool["item_id"].iloc[[0, -1]].tolist() == ["DEMO-0001", "DEMO-0600"]


def test_every_key_is_the_answer_read_from_the_question(bank):
    for item in bank["items"]:
        options = item["options"]
        assert [o["label"] for o in options] == ["A", "B", "C", "D"], item["item_id"]
        values = [Fraction(o["text_md"].rstrip("%")) for o in options]
        assert len(set(values)) == 4, item["item_id"]
        answer = expected_answer(item["stem_md"])
        matching = [o for o, v in zip(options, values) if v == answer]
        assert len(matching) == 1 and matching[0]["is_correct"], (item["item_id"], item["stem_md"], options)
        assert sum(o["is_correct"] for o in options) == 1
        if item["topic"] == "fractions":  # in lowest terms
            assert matching[0]["text_md"] == str(answer), (item["item_id"], matching[0]["text_md"])
        assert matching[0]["text_md"].rstrip("%") in item["rationale_md"], item["item_id"]


def test_harder_items_have_harder_text(bank, pool):
    """Within every topic, the digits a question makes you handle grow with b."""
    frame = pd.DataFrame(
        {
            "topic": pool["topic"],
            "b": pool["b"],
            "digits": [
                len(
                    re.findall(
                        r"\d", i["stem_md"] + next(o["text_md"] for o in i["options"] if o["is_correct"])
                    )
                )
                for i in bank["items"]
            ],
        }
    )
    for topic, group in frame.groupby("topic"):
        rho = spearmanr(group["b"], group["digits"]).statistic
        assert rho > 0.5, (topic, rho)
    labels = np.array([i["difficulty_label"] for i in bank["items"]])
    assert (pool["b"][labels == "easy"] < -0.5).all() and (pool["b"][labels == "hard"] > 0.5).all()


def test_the_generator_reproduces_the_file(bank):
    spec = importlib.util.spec_from_file_location("make_demo_bank", ROOT / "scripts" / "make_demo_bank.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build_bank() == bank
