"""Renders the chat-template cases of templates.json with Jinja2 set up the
way Hugging Face transformers' `apply_chat_template` sets it up
(transformers/utils/chat_template_utils.py: sandboxed environment,
trim_blocks, lstrip_blocks, loop controls, its own tojson, raise_exception,
strftime_now) and writes the expected texts into rendered.json.

    python3 engine/tests/data_fixtures/hf_render.py   # needs jinja2 only
"""

import json
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

here = Path(__file__).parent


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

spec = json.loads((here / "templates.json").read_text())
out = []
for case in spec["cases"]:
    template = env.from_string(spec["templates"][case["template"]])
    try:
        text = template.render(
            messages=case["messages"],
            tools=case.get("tools"),
            documents=None,
            add_generation_prompt=case["add_generation_prompt"],
            bos_token=case.get("bos_token", ""),
            eos_token=case.get("eos_token", ""),
        )
        out.append({"name": case["name"], "text": text})
    except jinja2.exceptions.TemplateError as error:
        out.append({"name": case["name"], "error": str(error)})
(here / "rendered.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
