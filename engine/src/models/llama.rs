//! Llama 2/3, Mistral, SmolLM2, TinyLlama: separate q/k/v/o projections
//! (biased only with `attention_bias`), SwiGLU MLP, RMSNorm.

use super::decoder::BlockLayout;
use crate::model_config::ModelConfig;

pub(crate) fn layout(config: &ModelConfig) -> BlockLayout {
    BlockLayout {
        fused_qkv: false,
        qkv_bias: config.attention_bias,
        o_bias: config.attention_bias,
        qk_norm: false,
        fused_gate_up: false,
    }
}
