//! The building blocks every supported family shares: linear layers (dense or
//! quantized, with an optional LoRA slot), embeddings, RMSNorm and RoPE.

use anyhow::{bail, Result};
use mlx_rs::{
    fast,
    ops::{dequantize, quantized_matmul},
    Array,
};

use super::adapter::LoraSlot;
use super::stacked::StackedLinear;
use crate::model_config::ModelConfig;

/// What one forward pass reads besides the base weights: the current LoRA
/// parameters (passed in, so gradients can be taken with respect to them)
/// and, while training with dropout, the seed that makes dropout masks
/// reproducible.
pub struct Pass<'a> {
    pub lora: &'a [Array],
    pub dropout_seed: Option<u64>,
    /// Recompute each decoder layer's activations in the backward pass
    /// rather than keep them (`grad_checkpoint`); passes with a KV cache
    /// ignore it.
    pub grad_checkpoint: bool,
}

#[derive(Clone)]
pub(crate) enum LinearWeight {
    Dense(Array),
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        group_size: i32,
        bits: i32,
    },
}

impl LinearWeight {
    /// `x @ W.T`
    pub(crate) fn apply(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            LinearWeight::Dense(w) => x.matmul(w.t())?,
            LinearWeight::Quantized {
                weight,
                scales,
                biases,
                group_size,
                bits,
            } => quantized_matmul(x, weight, scales, biases, true, *group_size, *bits)?,
        })
    }

    /// The whole weight `[out, in]`, dequantized if need be.
    pub(crate) fn dense(&self) -> Result<Array> {
        Ok(match self {
            LinearWeight::Dense(w) => w.clone(),
            LinearWeight::Quantized {
                weight,
                scales,
                biases,
                group_size,
                bits,
            } => dequantize(weight, scales, biases, *group_size, *bits)?,
        })
    }

    /// Rows `tokens` of the weight (`W[tokens]`), dequantized if need be.
    pub(crate) fn rows(&self, tokens: &Array) -> Result<Array> {
        Ok(match self {
            LinearWeight::Dense(w) => w.take_axis(tokens, 0)?,
            LinearWeight::Quantized {
                weight,
                scales,
                biases,
                group_size,
                bits,
            } => {
                // Only the looked-up rows are dequantized.
                let w = weight.take_axis(tokens, 0)?;
                let s = scales.take_axis(tokens, 0)?;
                let b = biases.take_axis(tokens, 0)?;
                dequantize(&w, &s, &b, *group_size, *bits)?
            }
        })
    }

    pub(crate) fn arrays<'a>(&'a self, out: &mut Vec<&'a Array>) {
        match self {
            LinearWeight::Dense(w) => out.push(w),
            LinearWeight::Quantized {
                weight,
                scales,
                biases,
                ..
            } => out.extend([weight, scales, biases]),
        }
    }

    pub(crate) fn is_quantized(&self) -> bool {
        matches!(self, LinearWeight::Quantized { .. })
    }
}

#[derive(Clone)]
pub struct Linear {
    pub(crate) weight: LinearWeight,
    pub(crate) bias: Option<Array>,
    pub in_dim: usize,
    pub out_dim: usize,
    pub(crate) lora: Option<LoraSlot>,
    /// Adapters applied per row in batched generation (`stacked`).
    pub(crate) stacked: Option<Box<StackedLinear>>,
}

impl Linear {
    pub(crate) fn forward(&self, x: &Array, pass: &Pass) -> Result<Array> {
        let mut y = self.weight.apply(x)?;
        if let Some(slot) = self.lora.as_ref().filter(|slot| slot.dora) {
            // DoRA rescales the adapted output's rows before the bias.
            y = y.add(slot.delta(x, pass)?)?;
            y = y.multiply(
                slot.magnitude_scale(&self.weight, pass)?
                    .as_dtype(x.dtype())?,
            )?;
            if let Some(bias) = &self.bias {
                y = y.add(bias)?;
            }
            return Ok(y);
        }
        if let Some(bias) = &self.bias {
            y = y.add(bias)?;
        }
        if let Some(slot) = &self.lora {
            y = y.add(slot.delta(x, pass)?)?;
        }
        Ok(y)
    }

    pub fn is_quantized(&self) -> bool {
        self.weight.is_quantized()
    }

    pub fn has_lora(&self) -> bool {
        self.lora.is_some()
    }
}

#[derive(Clone)]
pub(crate) struct Embedding {
    pub(crate) weight: LinearWeight,
}

impl Embedding {
    pub(crate) fn lookup(&self, tokens: &Array) -> Result<Array> {
        self.weight.rows(tokens)
    }

    /// Tied output head: `h @ E.T`.
    pub(crate) fn as_linear(&self, h: &Array) -> Result<Array> {
        self.weight.apply(h)
    }
}

#[derive(Clone)]
pub(crate) struct RmsNorm {
    pub(crate) weight: Array,
    pub(crate) eps: f32,
}

impl RmsNorm {
    pub(crate) fn forward(&self, x: &Array) -> Result<Array> {
        Ok(fast::rms_norm(x, Some(&self.weight), self.eps)?)
    }
}

/// Rotary position embedding: plain (`base`, `scale`) or with explicit
/// per-dimension frequencies (Llama 3's `rope_scaling`).
#[derive(Clone)]
pub(crate) struct Rope {
    dims: i32,
    traditional: bool,
    base: f32,
    scale: f32,
    freqs: Option<Array>,
}

impl Rope {
    pub(crate) fn new(config: &ModelConfig, dims: usize) -> Result<Self> {
        let mut rope = Rope {
            dims: dims as i32,
            traditional: config.rope_traditional,
            base: config.rope_theta,
            scale: 1.0,
            freqs: None,
        };
        let Some(scaling) = &config.rope_scaling else {
            return Ok(rope);
        };
        match scaling.rope_type.as_str() {
            "default" => {}
            "linear" => {
                let Some(factor) = scaling.factor else {
                    bail!("rope_scaling: `linear` needs `factor`");
                };
                rope.scale = 1.0 / factor;
            }
            "llama3" => rope.freqs = Some(llama3_freqs(config, dims)?),
            other => bail!(
                "rope_scaling type `{other}` is not supported (supported: default, linear, llama3)"
            ),
        }
        Ok(rope)
    }

    fn base_and_freqs(&self) -> (Option<f32>, Option<&Array>) {
        match &self.freqs {
            Some(freqs) => (None, Some(freqs)),
            None => (Some(self.base), None),
        }
    }

    /// `x` is `[batch, heads, length, head_dim]`; positions start at `offset`.
    pub(crate) fn forward(&self, x: &Array, offset: usize) -> Result<Array> {
        let (base, freqs) = self.base_and_freqs();
        Ok(fast::rope(
            x,
            self.dims,
            self.traditional,
            base,
            self.scale,
            offset as i32,
            freqs,
        )?)
    }

    /// `forward` where row `b`'s positions start at `offsets[b]` (`[batch]`
    /// int32): a batch of sequences left-padded to one length.
    pub(crate) fn forward_rows(&self, x: &Array, offsets: &Array) -> Result<Array> {
        let (base, freqs) = self.base_and_freqs();
        Ok(fast::rope_dynamic(
            x,
            self.dims,
            self.traditional,
            base,
            self.scale,
            offsets,
            freqs,
        )?)
    }
}

/// Llama 3.x frequency scaling: long wavelengths are slowed by `factor`,
/// short ones kept, and the band between interpolated smoothly.
fn llama3_freqs(config: &ModelConfig, dims: usize) -> Result<Array> {
    let scaling = config.rope_scaling.as_ref().expect("checked by caller");
    let Some(factor) = scaling.factor else {
        bail!("rope_scaling: `llama3` needs `factor`");
    };
    let low_freq_factor = scaling.low_freq_factor.unwrap_or(1.0);
    let high_freq_factor = scaling.high_freq_factor.unwrap_or(4.0);
    let old_context = scaling.original_max_position_embeddings.unwrap_or(8192) as f32;
    if high_freq_factor == low_freq_factor {
        bail!("rope_scaling: `high_freq_factor` must differ from `low_freq_factor`");
    }
    let low_freq_wavelen = old_context / low_freq_factor;
    let high_freq_wavelen = old_context / high_freq_factor;
    let freqs: Vec<f32> = (0..dims)
        .step_by(2)
        .map(|i| {
            // Computed in f32 as mlx-lm does, so both sides round alike.
            let freq = config.rope_theta.powf(i as f32 / dims as f32);
            let wavelen = 2.0 * std::f32::consts::PI * freq;
            let scaled = if wavelen > low_freq_wavelen {
                freq * factor
            } else {
                freq
            };
            let medium = wavelen > high_freq_wavelen && wavelen < low_freq_wavelen;
            if medium {
                let smooth = (old_context / wavelen - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                scaled / ((1.0 - smooth) / factor + smooth)
            } else {
                scaled
            }
        })
        .collect();
    let n = freqs.len() as i32;
    Ok(Array::from_slice(&freqs, &[n]))
}
