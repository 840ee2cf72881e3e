"""Table of the determinism probe's results: per configuration, pairs, mismatches and steps compared.

python benchmarks/determinism/summarize.py benchmarks/determinism/results.jsonl > benchmarks/determinism/results.txt
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def summarize(path: str) -> str:
    """Read the probe's JSON lines; one row per label, in the order labels first appear."""
    rows: dict[str, dict] = defaultdict(lambda: {"runs": 0, "pairs": 0, "mismatched": 0, "steps": 0, "seconds": 0.0})
    headers: dict[str, dict] = {}
    first_mismatch: dict[str, dict] = {}
    with open(path) as f:  # counted from the pair lines: a probe stopped by its timeout wrote no summary line
        for line in f:
            record = json.loads(line)
            if "header" in record:
                headers.setdefault(record["header"]["label"], record["header"])
                rows[record["header"]["label"]]["runs"] += 1
            elif "pair" in record:
                row = rows[record["label"]]
                row["pairs"] += 1
                row["mismatched"] += not record["equal"]
                row["steps"] += headers.get(record["label"], {}).get("k", 16)
                row["seconds"] += record.get("seconds_a", 0.0) + record.get("seconds_b", 0.0)
                if not record["equal"]:
                    first_mismatch.setdefault(record["label"], record)
    lines = [
        f"{'configuration':46} {'precision':9} {'per call':8} {'op det.':7} {'intra':5} "
        f"{'pairs':>6} {'mismatched':>10} {'steps compared':>14} {'seconds':>8}",
    ]
    for label, row in rows.items():
        h = headers.get(label, {})
        per_call = f"{h.get('steps_per_call')}" + (
            f"/{h['b_steps_per_call']}"
            if h.get("b_steps_per_call", h.get("steps_per_call")) != h.get("steps_per_call")
            else ""
        )
        lines.append(
            f"{label:46} {h.get('precision', '?'):9} {per_call:8} {str(h.get('op_determinism', '?')):7} "
            f"{h.get('intra_threads', '?')!s:5} {row['pairs']:>6} {row['mismatched']:>10} {row['steps']:>14} "
            f"{row['seconds']:>8.0f}"
        )
    total = sum(r["steps"] for r in rows.values())
    lines.append(f"total steps compared (each run twice): {total}")
    for label, record in first_mismatch.items():
        lines.append(f"first mismatch in {label}: {json.dumps(record)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/determinism/results.jsonl"))
