"""mlx-lm's learning-rate schedule values (mlx_lm.tuner.utils.build_schedule).

usage: peer_schedule.py SCHEDULE_JSON MAX_STEP
Prints the schedule at steps 0..=MAX_STEP as a JSON list.
"""

import json
import sys

import mlx.core as mx
from mlx_lm.tuner.utils import build_schedule


def main():
    schedule = build_schedule(json.loads(sys.argv[1]))
    steps = int(sys.argv[2])
    print(json.dumps([schedule(mx.array(s)).item() for s in range(steps + 1)]))


if __name__ == "__main__":
    main()
