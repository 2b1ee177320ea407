"""The README's per-lever ablation table, from ``bench/results/ablation/ARM.json``
(``bash bench/ablation.sh ARM ...``: each arm the closed-loop recipe with one lever changed,
the same small budget, ``core.evaluate --n 200``).

    python -m bench.ablation_table [--folder bench/results/ablation]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import RESULTS

# arm -> what it changes, in the order the table lists them
ARMS = {
    "full": "full recipe (feedback, target noise 0.1 σ, joint drop 0.1, 6 Fourier features)",
    "no_feedback": "no feedback (open loop: the condition prefix only)",
    "no_target_noise": "target noise 0 (the gap at [EOS] is exactly 0 in training)",
    "target_noise_005": "target noise 0.05 σ",
    "no_joint_drop": "no joint condition dropout (unconditioned 1 % of rows)",
    "fourier_16": "16 Fourier features (up to 90 rad per σ)",
    "derivation": "+ SELFIES derivation state read at every position",
    "open_end": "+ open-ended SELFIES (derivation arm; the next 150,000 molecules)",
}


def row(arm: str, result: dict) -> list[str]:
    """One table row: the arm, then the grid's MADs and hits, held-out pairs, MOSES."""
    s, h = result["summary"], result["heldout"]
    moses = result.get("moses", {}).get("conditioned_test_pairs", {})
    filters = moses.get("Filters")
    return [
        ARMS.get(arm, arm),
        f"{s['logp_mad']:.3f}",
        f"{s['tpsa_mad']:.2f}",
        f"{s['joint_hit']:.3f}",
        f"{h['mad_logp']:.3f} / {h['mad_tpsa']:.2f} / {h['hit_joint']:.3f}",
        f"{result['overall']['uniqueness']:.3f}",
        "" if filters is None else f"{filters:.3f}",
    ]


def table(folder: Path) -> str:
    """The markdown table of every arm with a result in ``folder``."""
    header = ["arm", "LogP MAD", "TPSA MAD", "joint hit", "test pairs: MAD LogP / TPSA / hit",
              "uniqueness", "Filters (test pairs)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    known = [a for a in ARMS if (folder / f"{a}.json").exists()]
    others = sorted(p.stem for p in folder.glob("*.json") if p.stem not in ARMS)
    for arm in known + others:
        result = json.loads((folder / f"{arm}.json").read_text())
        if "summary" in result:  # an evaluation (not bench.dead_ends' file beside it)
            lines.append("| " + " | ".join(row(arm, result)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default=str(RESULTS / "ablation"), help="arms' results")
    print(table(Path(parser.parse_args().folder)))


if __name__ == "__main__":
    main()
