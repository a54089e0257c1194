//! Qwen3 (dense): no projection biases; each head's queries and keys pass
//! through their own RMSNorm (`q_norm`, `k_norm`) before RoPE.

use super::decoder::BlockLayout;

pub(crate) fn layout() -> BlockLayout {
    BlockLayout {
        fused_qkv: false,
        qkv_bias: false,
        o_bias: false,
        qk_norm: true,
        fused_gate_up: false,
    }
}
