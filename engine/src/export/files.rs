//! The files beside an exported model's weights: `config.json`, the
//! tokenizer files, `generation_config.json` and the `README.md` model card.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::base::BaseModel;
use super::{ExportFormat, ExportOptions, ModelCard};
use crate::model_config::ModelConfig;
use crate::tokenizer::TokenizerBundle;

/// Files of an HF folder copied as they are when the base is one.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
];

fn write_json(dir: &Path, name: &str, value: &Value) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// transformers' class for each `model_type` we train.
fn architecture_class(model_type: &str) -> &'static str {
    match model_type {
        "mistral" => "MistralForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        "qwen3" => "Qwen3ForCausalLM",
        "phi3" => "Phi3ForCausalLM",
        _ => "LlamaForCausalLM",
    }
}

/// `config.json` of a model read from GGUF metadata, with the keys
/// transformers' config class of that family reads.
fn config_from_model_config(c: &ModelConfig, tokenizer: Option<&TokenizerBundle>) -> Value {
    let mut config = json!({
        "architectures": [architecture_class(&c.model_type)],
        "model_type": c.model_type,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads(),
        "head_dim": c.head_dim(),
        "hidden_act": "silu",
        "max_position_embeddings": c.max_position_embeddings.unwrap_or(2048),
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": c.rope_scaling,
        "tie_word_embeddings": c.tie_word_embeddings,
        "vocab_size": c.vocab_size,
        "initializer_range": 0.02,
        "use_cache": true,
        "attention_dropout": 0.0,
    });
    if c.model_type == "llama" {
        config["attention_bias"] = json!(c.attention_bias);
        config["mlp_bias"] = json!(false);
        config["pretraining_tp"] = json!(1);
    }
    if let Some(id) = tokenizer.and_then(TokenizerBundle::bos_token_id) {
        config["bos_token_id"] = json!(id);
    }
    if let Some(id) = tokenizer.and_then(TokenizerBundle::eos_token_id) {
        config["eos_token_id"] = json!(id);
    }
    config
}

fn dtype_name(options: &ExportOptions) -> &'static str {
    options.dtype.torch_name()
}

/// The fused model's `config.json`: the base's own (a GGUF base's is built
/// from its metadata), without the base's quantization, with the export's
/// dtype, and mlx-lm's `quantization` for an MLX-quantized export.
pub fn model_config_json(
    base: &BaseModel,
    tokenizer: Option<&TokenizerBundle>,
    options: &ExportOptions,
) -> Value {
    let mut config = match (&base.raw_config, tokenizer) {
        (Some(raw), _) => raw.clone(),
        (None, tokenizer) => config_from_model_config(&base.config, tokenizer),
    };
    let map = config.as_object_mut().expect("config.json is an object");
    map.remove("quantization");
    map.remove("quantization_config");
    // Set by some converters; the fused weights are in HF order.
    map.remove("rope_traditional");
    map.insert("torch_dtype".into(), json!(dtype_name(options)));
    if options.format == ExportFormat::Mlx {
        let q = json!({"group_size": options.group_size, "bits": options.bits});
        map.insert("quantization".into(), q.clone());
        map.insert("quantization_config".into(), q);
    }
    config
}

/// The tokenizer files: copied from an HF base (`tokenizer` None); from a
/// GGUF base, built from its metadata (`tokenizer.json` through our GGUF
/// tokenizer, the chat template and special tokens in
/// `tokenizer_config.json`).
pub fn write_tokenizer_files(
    dir: &Path,
    base: &BaseModel,
    tokenizer: Option<&TokenizerBundle>,
) -> Result<()> {
    let Some(tokenizer) = tokenizer else {
        for name in TOKENIZER_FILES {
            let from = base.path.join(name);
            if from.is_file() {
                std::fs::copy(&from, dir.join(name))
                    .with_context(|| format!("cannot copy {}", from.display()))?;
            }
        }
        return Ok(());
    };
    let path = dir.join("tokenizer.json");
    tokenizer
        .tokenizer
        .save(&path, true)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    let mut config = Map::new();
    config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    config.insert("clean_up_tokenization_spaces".into(), json!(false));
    config.insert("add_bos_token".into(), json!(tokenizer.add_bos_token));
    config.insert("add_eos_token".into(), json!(false));
    config.insert(
        "model_max_length".into(),
        json!(base.config.max_position_embeddings.unwrap_or(2048)),
    );
    let mut special = Map::new();
    for (key, token) in [
        ("bos_token", &tokenizer.bos_token),
        ("eos_token", &tokenizer.eos_token),
    ] {
        if let Some(token) = token {
            config.insert(key.into(), json!(token));
            special.insert(key.into(), json!(token));
        }
    }
    if let Some(template) = &tokenizer.chat_template {
        config.insert("chat_template".into(), json!(template));
    }
    write_json(dir, "tokenizer_config.json", &Value::Object(config))?;
    write_json(dir, "special_tokens_map.json", &Value::Object(special))?;
    let mut generation = Map::new();
    if let Some(id) = tokenizer.bos_token_id() {
        generation.insert("bos_token_id".into(), json!(id));
    }
    if !tokenizer.eos_token_ids.is_empty() {
        generation.insert("eos_token_id".into(), json!(tokenizer.eos_token_ids));
    }
    write_json(dir, "generation_config.json", &Value::Object(generation))
}

pub fn write_config(dir: &Path, config: &Value) -> Result<()> {
    write_json(dir, "config.json", config)
}

pub fn write_peft_config(dir: &Path, config: &Value) -> Result<()> {
    write_json(dir, "adapter_config.json", config)
}

/// The command that loads the export, as the card and the Exports page
/// show it; `path` is where the export lives.
pub fn usage(format: ExportFormat, path: &str, base_ref: &str) -> String {
    match format {
        ExportFormat::Hf => format!(
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\
             model = AutoModelForCausalLM.from_pretrained(\"{path}\")\n\
             tokenizer = AutoTokenizer.from_pretrained(\"{path}\")\n\n\
             # or with mlx-lm:\n\
             mlx_lm.generate --model {path} --prompt \"Hello\""
        ),
        ExportFormat::Mlx => format!("mlx_lm.generate --model {path} --prompt \"Hello\""),
        ExportFormat::Peft => format!(
            "from peft import PeftModel\n\
             from transformers import AutoModelForCausalLM\n\
             base = AutoModelForCausalLM.from_pretrained(\"{base_ref}\")\n\
             model = PeftModel.from_pretrained(base, \"{path}\")"
        ),
        ExportFormat::Gguf => format!(
            "llama-cli -m {path}/{model} -p \"Hello\"\n\n\
             # or with Ollama:\n\
             ollama create my-model -f {path}/{}\n\n\
             # or with LM Studio (its models folder layout is in {path}/{lm_studio}):\n\
             cp -r {path}/{lm_studio}/. ~/.lmstudio/models/",
            super::gguf::MODELFILE,
            model = super::gguf::MODEL_FILE,
            lm_studio = super::gguf::LM_STUDIO_DIR,
        ),
        ExportFormat::GgufLora => format!(
            "llama-cli -m {base_ref} --lora {path}/{} -p \"Hello\"\n\n\
             # or with Ollama (the Modelfile names the base):\n\
             ollama create my-model -f {path}/{}",
            super::gguf::ADAPTER_FILE,
            super::gguf::MODELFILE
        ),
    }
}

/// The model card; `fused` says whether an adapter was folded in (else the
/// base was only converted).
pub fn write_card(
    dir: &Path,
    card: &ModelCard,
    options: &ExportOptions,
    fused: bool,
) -> Result<()> {
    let base_ref = card.hub_repo.as_deref().unwrap_or(&card.base_name);
    let mut text = String::new();
    text.push_str("---\n");
    if let Some(repo) = &card.hub_repo {
        text.push_str(&format!("base_model: {repo}\n"));
    }
    text.push_str(match options.format {
        ExportFormat::Peft => "library_name: peft\n",
        ExportFormat::Mlx => "library_name: mlx\n",
        ExportFormat::Hf => "library_name: transformers\n",
        ExportFormat::Gguf | ExportFormat::GgufLora => "library_name: gguf\n",
    });
    text.push_str("tags:\n- loralab\n- lora\n---\n\n");
    text.push_str(&format!("# {}\n\n", card.title));
    let how = if fused {
        "with its adapter fused in"
    } else {
        "converted"
    };
    let what = match options.format {
        ExportFormat::Hf => format!(
            "`{}` {how}, as {} safetensors.",
            card.base_name,
            options.dtype.torch_name()
        ),
        ExportFormat::Mlx => format!(
            "`{}` {how}, quantized by MLX to {} bits (groups of {}).",
            card.base_name, options.bits, options.group_size
        ),
        ExportFormat::Peft => format!("A PEFT LoRA adapter for `{base_ref}` (not fused)."),
        ExportFormat::Gguf => format!(
            "`{}` {how}, as GGUF ({}) for llama.cpp, Ollama and LM Studio.",
            card.base_name,
            options.quant.name()
        ),
        ExportFormat::GgufLora => format!(
            "A llama.cpp LoRA adapter (GGUF, {}) for `{base_ref}` (not fused).",
            options.quant.name()
        ),
    };
    text.push_str(&format!("{what} Made with Loralab.\n\n"));
    text.push_str("| | |\n|---|---|\n");
    text.push_str(&format!("| base model | `{}` |\n", card.base_name));
    if let Some(dataset) = &card.dataset {
        text.push_str(&format!("| dataset | `{dataset}` |\n"));
    }
    for (key, value) in &card.details {
        text.push_str(&format!("| {key} | {value} |\n"));
    }
    text.push_str(&format!(
        "\n## Use it\n\n```\n{}\n```\n",
        usage(options.format, ".", base_ref)
    ));
    let path = dir.join("README.md");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}
