//! Qwen2 / Qwen2.5: Llama's block with biases on q/k/v (never on o_proj).

use super::decoder::BlockLayout;

pub(crate) fn layout() -> BlockLayout {
    BlockLayout {
        fused_qkv: false,
        qkv_bias: true,
        o_bias: false,
        qk_norm: false,
        fused_gate_up: false,
    }
}
