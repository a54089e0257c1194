"""TensorBoard's own reader on a folder of event files: every scalar series.

usage: tensorboard_read.py LOG_DIR
Prints {"tag": [[step, value], ...], ...} as JSON. Needs `tensorboard`
(installed in the peer venv by scripts/setup-peer.sh); its record reader
checks every record's masked CRC-32C.
"""

import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
    accumulator.Reload()
    scalars = {
        tag: [[event.step, event.value] for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }
    print(json.dumps(scalars))


if __name__ == "__main__":
    main()
