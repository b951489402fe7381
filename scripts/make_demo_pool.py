"""Regenerates data/demo_pool.csv, the demo 3PL pool (seeded; run from the repository root).

Parameter spread follows what operational 3PL banks report: log a ~ N(0.1, 0.3)
(a mostly 0.6-2.0), b ~ N(0, 1) clipped to [-3, 3], c ~ Beta(5, 17) (mean 0.23).
"""

import numpy as np
import pandas as pd

TOPICS = [
    "addition",
    "subtraction",
    "multiplication",
    "division",
    "fractions",
    "percentages",
    "length-units",
    "mass-units",
]


def main(n_items: int = 600, seed: int = 20261124) -> None:
    rng = np.random.default_rng(seed)
    a = np.exp(rng.normal(0.1, 0.3, n_items)).clip(0.4, 2.5)
    b = rng.normal(0.0, 1.0, n_items).clip(-3.0, 3.0)
    c = rng.beta(5, 17, n_items).clip(0.0, 0.35)
    topic = [TOPICS[i % len(TOPICS)] for i in range(n_items)]
    frame = pd.DataFrame(
        {
            "item_id": [f"DEMO-{i + 1:04d}" for i in range(n_items)],
            "a": a.round(4),
            "b": b.round(4),
            "c": c.round(4),
            "D": 1.0,
            "topic": topic,
        }
    )
    frame.to_csv("data/demo_pool.csv", index=False)


if __name__ == "__main__":
    main()
