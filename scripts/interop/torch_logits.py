"""transformers on the fused folders and PEFT on the base + PEFT export,
against the reference logits; prints a table and fails over tolerance."""
import sys
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent))
from prompt import PROMPT  # noqa: E402

work, reference_path = Path(sys.argv[1]), sys.argv[2]
reference = np.load(reference_path)[0]
tokens = torch.tensor([PROMPT])


def logits_of(model):
    with torch.no_grad():
        return model(tokens).logits[0].float().numpy()


def relative(a):
    return float(np.abs(a - reference).max() / np.abs(reference).max())


checks = []
fused = AutoModelForCausalLM.from_pretrained(work / "fused-f32", torch_dtype=torch.float32)
checks.append(("transformers, fused f32", relative(logits_of(fused)), 1e-3))
# bf16 weights: what the export itself loses is the rounding of each weight,
# seen with the bf16 folder computed in f32; bf16 arithmetic through 30
# layers adds its own error, the same as for torch's own cast of our f32
# folder, which bounds what the bf16 folder may show computed in bf16.
upcast = AutoModelForCausalLM.from_pretrained(work / "fused-bf16", torch_dtype=torch.float32)
checks.append(("transformers, fused bf16 (f32 math)", relative(logits_of(upcast)), 5e-2))
# The bf16 folder's weights are exactly torch's rounding of the f32 folder's.
ours = {k: v for k, v in upcast.state_dict().items()}
theirs = AutoModelForCausalLM.from_pretrained(work / "fused-f32", torch_dtype=torch.float32).state_dict()
differing = sum(not torch.equal(ours[k], theirs[k].to(torch.bfloat16).float()) for k in theirs)
checks.append(("bf16 weights != torch's own rounding", float(differing), 0))
cast = AutoModelForCausalLM.from_pretrained(work / "fused-f32", torch_dtype=torch.bfloat16)
torch_cast = relative(logits_of(cast))
fused_bf16 = AutoModelForCausalLM.from_pretrained(work / "fused-bf16", torch_dtype=torch.bfloat16)
checks.append(("transformers, fused bf16 (bf16 math)", relative(logits_of(fused_bf16)), 1.25 * torch_cast))
base = AutoModelForCausalLM.from_pretrained(work / "base", torch_dtype=torch.float32)
base_only = relative(logits_of(base))
peft = PeftModel.from_pretrained(base, work / "peft")
checks.append(("peft, base + PEFT adapter", relative(logits_of(peft)), 1e-3))
tokenizer = AutoTokenizer.from_pretrained(work / "fused-f32")
chat = tokenizer.apply_chat_template([{"role": "user", "content": "Where is the map?"}], add_generation_prompt=True)
ids = chat["input_ids"] if isinstance(chat, dict) or hasattr(chat, "keys") else chat

print(f"{'check':36} {'max rel. diff':>14} {'tolerance':>10}")
failed = False
for name, diff, tolerance in checks:
    ok = diff <= tolerance
    failed |= not ok
    print(f"{name:36} {diff:14.2e} {tolerance:10.0e} {'ok' if ok else 'FAIL'}")
print(f"{'(f32 folder cast by torch to bf16)':36} {torch_cast:14.2e}")
print(f"{'(base alone, for scale)':36} {base_only:14.2e}")
print(f"tokenizer: the fused folder's chat template gives {len(ids)} tokens for a user turn")
greedy = fused.generate(tokens, max_new_tokens=12, do_sample=False)[0][len(PROMPT):].tolist()
print(f"transformers greedy continuation: {tokenizer.decode(greedy)!r}")
sys.exit(1 if failed else 0)
