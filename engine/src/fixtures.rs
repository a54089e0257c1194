//! Tiny random models for tests of code that trains for real (the server's
//! worker and supervisor tests): a Llama-shaped HF folder of a few hundred
//! KB with a byte-level tokenizer and a ChatML template, so the shipped
//! sample dataset tokenizes and trains in milliseconds per step.

use std::path::Path;

use anyhow::{anyhow, Result};
use mlx_rs::{random, Array};
use serde_json::json;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

pub const HIDDEN: usize = 32;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const INTERMEDIATE: usize = 64;
/// 256 byte tokens plus `<|im_start|>` and `<|im_end|>`.
pub const VOCAB: usize = 258;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Writes `config.json`, `model.safetensors`, `tokenizer.json` and
/// `tokenizer_config.json` of a tiny random Llama into `dir`. The weights
/// depend only on `seed`.
pub fn write_tiny_llama(dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
    let config = json!({
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "intermediate_size": INTERMEDIATE,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "vocab_size": VOCAB,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": false,
    });
    write(dir, "config.json", &serde_json::to_string_pretty(&config)?)?;
    let weights = tiny_weights(seed)?;
    let path = dir.join("model.safetensors");
    Array::save_safetensors(weights.iter().map(|(k, v)| (k.as_str(), v)), None, &path)
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    byte_tokenizer()?
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| anyhow!("cannot write tokenizer.json: {e}"))?;
    let tokenizer_config = json!({
        "chat_template": CHATML,
        "eos_token": "<|im_end|>",
        "add_bos_token": false,
    });
    write(
        dir,
        "tokenizer_config.json",
        &serde_json::to_string_pretty(&tokenizer_config)?,
    )
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

fn tiny_weights(seed: u64) -> Result<Vec<(String, Array)>> {
    let (h, inter, vocab) = (HIDDEN as i32, INTERMEDIATE as i32, VOCAB as i32);
    let head_dim = (HIDDEN / HEADS) as i32;
    let kv = KV_HEADS as i32 * head_dim;
    let mut specs: Vec<(String, Vec<i32>, bool)> =
        vec![("model.embed_tokens.weight".into(), vec![vocab, h], false)];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        for (name, shape, norm) in [
            ("self_attn.q_proj.weight", vec![h, h], false),
            ("self_attn.k_proj.weight", vec![kv, h], false),
            ("self_attn.v_proj.weight", vec![kv, h], false),
            ("self_attn.o_proj.weight", vec![h, h], false),
            ("mlp.gate_proj.weight", vec![inter, h], false),
            ("mlp.up_proj.weight", vec![inter, h], false),
            ("mlp.down_proj.weight", vec![h, inter], false),
            ("input_layernorm.weight", vec![h], true),
            ("post_attention_layernorm.weight", vec![h], true),
        ] {
            specs.push((format!("{p}.{name}"), shape, norm));
        }
    }
    specs.push(("model.norm.weight".into(), vec![h], true));
    specs.push(("lm_head.weight".into(), vec![vocab, h], false));

    let mut key = random::key(seed)?;
    let mut out = Vec::with_capacity(specs.len());
    for (name, shape, norm) in specs {
        let (next, sub) = random::split(&key, 2)?;
        key = next;
        let noise = random::normal::<f32>(&shape[..], None, None, &sub)?;
        // Norm scales near one and small matrices keep the logits tame, so
        // the first losses sit near ln(VOCAB) and training visibly lowers them.
        let value = if norm {
            noise
                .multiply(Array::from_f32(0.1))?
                .add(Array::from_f32(1.0))?
        } else {
            noise.multiply(Array::from_f32(0.08))?
        };
        out.push((name, value));
    }
    mlx_rs::transforms::eval(out.iter().map(|(_, a)| a))?;
    Ok(out)
}

/// Byte-level BPE without merges: byte `b` is token `b` (GPT-2's byte to
/// character table), plus the two ChatML markers as special tokens.
fn byte_tokenizer() -> Result<Tokenizer> {
    let mut shifted = 0u32;
    let vocab: tokenizers::models::bpe::Vocab = (0..=255u8)
        .map(|b| {
            let printable = (b'!'..=b'~').contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            let c = if printable {
                char::from(b)
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).expect("valid code point")
            };
            (c.to_string(), u32::from(b))
        })
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .map_err(|e| anyhow!("byte tokenizer: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.add_special_tokens(&[
        AddedToken::from("<|im_start|>", true),
        AddedToken::from("<|im_end|>", true),
    ]);
    Ok(tokenizer)
}
