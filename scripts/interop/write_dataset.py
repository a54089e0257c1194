"""A small chat dataset (train/valid) for the interop check's adapter."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
questions = ["Where is the ship?", "What is for dinner?", "Who keeps the map?", "When do we sail?"]
rows = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"Arr, {q.lower()} Ask the captain, matey!"}]}
    for q in questions * 8
]
(out / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
(out / "valid.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:4]) + "\n")
