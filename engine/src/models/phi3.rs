//! Phi-3: one fused `qkv_proj` and one fused `gate_up_proj`, no biases.
//! LoRA adapts the fused matrices as single layers, as mlx-lm does, so
//! adapters move between the two unchanged.

use anyhow::{bail, Result};

use super::decoder::BlockLayout;
use crate::model_config::ModelConfig;

pub(crate) fn layout(config: &ModelConfig) -> Result<BlockLayout> {
    if let Some(scaling) = &config.rope_scaling {
        if scaling.rope_type != "linear" && scaling.rope_type != "default" {
            bail!(
                "phi3: rope_scaling type `{}` (long-context Phi-3) is not supported",
                scaling.rope_type
            );
        }
    }
    Ok(BlockLayout {
        fused_qkv: true,
        qkv_bias: false,
        o_bias: false,
        qk_norm: false,
        fused_gate_up: true,
    })
}
