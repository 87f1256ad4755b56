"""Reference Dawid-Skene labels from crowd-kit, to check ours against.

Reads a CSV of votes with a header `task,worker,label` (integers) and runs
crowd-kit's DawidSkene with its defaults (n_iter=100, tol=1e-5). Prints a JSON
object {task: label} to stdout, or writes it to --labels-out. With --timing,
reports the fit time (without reading the CSV) and the iterations on stderr.
"""

import argparse
import json
import sys
import time

import pandas as pd
from crowdkit.aggregation import DawidSkene


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("votes", help="CSV with columns task,worker,label")
    parser.add_argument("--labels-out", help="write the JSON here instead of stdout")
    parser.add_argument("--timing", action="store_true", help="report fit time on stderr")
    args = parser.parse_args()

    votes = pd.read_csv(args.votes, dtype={"task": "int64", "worker": "int64", "label": "int64"})
    started = time.perf_counter()
    model = DawidSkene(n_iter=100, tol=1e-5)
    labels = model.fit_predict(votes)
    seconds = time.perf_counter() - started
    if args.timing:
        print(
            f"crowd-kit DawidSkene: {seconds:.3f} s, {len(model.loss_history_)} iterations",
            file=sys.stderr,
        )

    out = {str(int(task)): int(label) for task, label in labels.items()}
    if args.labels_out:
        with open(args.labels_out, "w", encoding="utf-8") as f:
            json.dump(out, f)
    else:
        json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
