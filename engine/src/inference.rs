//! A loaded base model that serves generations with any adapter: the base
//! is read once, adapters are swapped in place (see
//! [`crate::lora::swap_adapters`]). Used by the inference worker process;
//! like every MLX object it must stay on one thread.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use crate::config::ComputeDtype;
use crate::generate::{
    chat_prompt, generate_text, text_prompt, FinishReason, GenerateParams, Generation,
    SamplingParams,
};
use crate::lora;
use crate::models::{build_model, load_hf_folder, Model};
use crate::protocol::{GenerationSettings, InferencePrompt};
use crate::tokenizer::TokenizerBundle;

/// Longest generation a request may ask for: an upper bound on how long one
/// request holds the worker.
pub const MAX_TOKENS_LIMIT: usize = 4096;

/// A base model, its tokenizer and the adapter currently swapped in.
pub struct InferenceSession {
    model: Model,
    tokenizer: TokenizerBundle,
    model_path: PathBuf,
    adapter: Option<PathBuf>,
    /// Base models loaded by this process (1 after `load`).
    pub base_loads: u64,
    /// Adapter folders read by this process.
    pub adapter_loads: u64,
}

impl InferenceSession {
    /// Loads a GGUF file or an HF folder. On the CPU, quantized GGUF weights
    /// are dequantized to f32, which MLX computes far faster there.
    pub fn load(path: &Path) -> Result<Self> {
        let (model, tokenizer) = load_base(path)?;
        Ok(Self {
            model,
            tokenizer,
            model_path: path.to_path_buf(),
            adapter: None,
            base_loads: 1,
            adapter_loads: 0,
        })
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    pub fn adapter(&self) -> Option<&Path> {
        self.adapter.as_deref()
    }

    pub fn tokenizer(&self) -> &TokenizerBundle {
        &self.tokenizer
    }

    /// Loads another base in place (counted in `base_loads`); the adapter
    /// is dropped.
    pub fn reload(&mut self, path: &Path) -> Result<()> {
        let (model, tokenizer) = load_base(path)?;
        self.model = model;
        self.tokenizer = tokenizer;
        self.model_path = path.to_path_buf();
        self.adapter = None;
        self.base_loads += 1;
        Ok(())
    }

    /// Puts `dir`'s adapter (or none) on the base. Returns whether anything
    /// changed: asking for the adapter already in place reads nothing.
    pub fn set_adapter(&mut self, dir: Option<&Path>) -> Result<bool> {
        if self.adapter.as_deref() == dir {
            return Ok(false);
        }
        let result = lora::swap_adapters(&mut self.model, dir);
        if dir.is_some() {
            self.adapter_loads += 1;
        }
        match result {
            Ok(()) => {
                self.adapter = dir.map(Path::to_path_buf);
                Ok(true)
            }
            Err(error) => {
                // swap_adapters leaves the bare base behind on failure.
                self.adapter = None;
                Err(error)
            }
        }
    }

    /// The prompt's tokens: a conversation through the chat template, or
    /// plain text.
    pub fn prompt_tokens(&self, prompt: &InferencePrompt) -> Result<Vec<u32>> {
        match prompt {
            InferencePrompt::Chat { messages } => {
                if messages.is_empty() {
                    bail!("the conversation has no messages");
                }
                chat_prompt(&self.tokenizer, messages.as_slice())
            }
            InferencePrompt::Text { text } => {
                if text.is_empty() {
                    bail!("the prompt is empty");
                }
                text_prompt(&self.tokenizer, text)
            }
        }
    }

    /// Generates with the current adapter, calling `on_text` with each piece
    /// of text as it becomes final.
    pub fn generate(
        &self,
        prompt: &InferencePrompt,
        settings: &GenerationSettings,
        on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        let params = generate_params(settings)?;
        let tokens = self.prompt_tokens(prompt)?;
        generate_text(
            &self.model,
            &self.tokenizer.tokenizer,
            &tokens,
            &self.tokenizer.eos_token_ids,
            &params,
            on_text,
        )
    }
}

/// The protocol's settings as the generator's, checked field by field.
pub fn generate_params(settings: &GenerationSettings) -> Result<GenerateParams> {
    if settings.max_tokens == 0 || settings.max_tokens > MAX_TOKENS_LIMIT {
        bail!(
            "max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, got {}",
            settings.max_tokens
        );
    }
    let sampling = SamplingParams {
        temperature: settings.temperature,
        top_p: settings.top_p,
        top_k: settings.top_k,
        repetition_penalty: settings.repetition_penalty,
        seed: settings.seed,
        ..SamplingParams::default()
    };
    sampling.validate()?;
    Ok(GenerateParams {
        max_tokens: settings.max_tokens,
        sampling,
    })
}

/// `stop` or `length`, as the protocol spells a finish reason.
pub fn finish_reason_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn load_base(path: &Path) -> Result<(Model, TokenizerBundle)> {
    let loaded = if path.is_dir() {
        let model = load_hf_folder(path, ComputeDtype::Auto)?;
        let tokenizer = TokenizerBundle::from_hf_folder(path)?;
        (model, tokenizer)
    } else if path.is_file() {
        let mut gguf = crate::gguf::load_gguf_model(path)
            .map_err(|e| anyhow!("model {}: {e}", path.display()))?;
        if crate::device::current().kind == "cpu" {
            gguf.dequantize_weights()
                .map_err(|e| anyhow!("model {}: {e}", path.display()))?;
        }
        let model = build_model(&gguf.config, gguf.weights, ComputeDtype::Auto)
            .map_err(|e| anyhow!("model {}: {e:#}", path.display()))?;
        (model, gguf.tokenizer)
    } else {
        bail!(
            "model {} does not exist: give a GGUF file or a model folder (config.json + *.safetensors)",
            path.display()
        );
    };
    Ok(loaded)
}
