//! The decoder-only transformer the supported families share: pre-norm
//! blocks of grouped-query attention (RoPE, optional Q/K norms, separate or
//! fused projections) and a SwiGLU MLP.

use anyhow::{anyhow, Result};
use mlx_rs::{
    fast::{self, ScaledDotProductAttentionMask},
    nn::silu,
    Array,
};

use super::batch_cache::{append, StepMask};
use super::fused::{causal_attention, written_out};
use super::grad_checkpoint::checkpointed;
use super::layers::{Linear, LinearWeight, Pass, RmsNorm, Rope};
use super::stacked::RowAdapters;
use super::weights::WeightMap;
use crate::model_config::ModelConfig;

/// How a family lays out its block; each family file builds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    /// One `qkv_proj` (Phi-3) instead of `q_proj`/`k_proj`/`v_proj`.
    pub fused_qkv: bool,
    /// Biases on the q/k/v projections (Qwen2, `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on `o_proj` (Llama's `attention_bias` covers it too).
    pub o_bias: bool,
    /// RMSNorm of each head's queries and keys before RoPE (Qwen3).
    pub qk_norm: bool,
    /// One `gate_up_proj` (Phi-3) instead of `gate_proj`/`up_proj`.
    pub fused_gate_up: bool,
}

// One per block, built once: the unused room of a fused layout costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Qkv {
    Separate { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
}

#[derive(Clone)]
struct Attention {
    qkv: Qkv,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    rope: Rope,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

/// Keys and values of earlier positions, one entry per block, for
/// incremental decoding.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Array, Array)>>,
    offset: usize,
}

impl KvCache {
    /// Number of positions already held.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// How a forward pass applies adapters: those attached to the model (the
/// pass's parameters), or each row its own from a stack.
enum Adapters<'a> {
    Attached(&'a Pass<'a>),
    PerRow(&'a RowAdapters),
}

impl Adapters<'_> {
    fn apply(&self, linear: &Linear, x: &Array) -> Result<Array> {
        match self {
            Adapters::Attached(pass) => linear.forward(x, pass),
            Adapters::PerRow(rows) => linear.forward_rows(x, rows),
        }
    }
}

/// What a block's attention attends over besides the new positions.
pub(crate) enum Attend<'c> {
    /// Nothing: the input is the whole sequence (training, evaluation).
    Whole,
    /// One sequence's cache, holding `offset` positions.
    Cached {
        slot: &'c mut Option<(Array, Array)>,
        offset: usize,
    },
    /// A batch's cache (see `batch_cache`), holding `start` positions;
    /// `positions` `[rows]` is each row's position of its first new token.
    Rows {
        slot: &'c mut Option<(Array, Array)>,
        start: usize,
        positions: &'c Array,
        mask: &'c StepMask,
    },
}

impl Attention {
    fn load(w: &mut WeightMap, p: &str, c: &ModelConfig, layout: BlockLayout) -> Result<Self> {
        let (hidden, n_heads, n_kv, head_dim) = (
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads(),
            c.head_dim(),
        );
        let qkv = if layout.fused_qkv {
            let out = (n_heads + 2 * n_kv) * head_dim;
            Qkv::Fused(w.linear(&format!("{p}.qkv_proj"), hidden, out, layout.qkv_bias)?)
        } else {
            Qkv::Separate {
                q: w.linear(
                    &format!("{p}.q_proj"),
                    hidden,
                    n_heads * head_dim,
                    layout.qkv_bias,
                )?,
                k: w.linear(
                    &format!("{p}.k_proj"),
                    hidden,
                    n_kv * head_dim,
                    layout.qkv_bias,
                )?,
                v: w.linear(
                    &format!("{p}.v_proj"),
                    hidden,
                    n_kv * head_dim,
                    layout.qkv_bias,
                )?,
            }
        };
        let o_proj = w.linear(
            &format!("{p}.o_proj"),
            n_heads * head_dim,
            hidden,
            layout.o_bias,
        )?;
        let (q_norm, k_norm) = if layout.qk_norm {
            (
                Some(w.rms_norm(&format!("{p}.q_norm"), head_dim, c.rms_norm_eps)?),
                Some(w.rms_norm(&format!("{p}.k_norm"), head_dim, c.rms_norm_eps)?),
            )
        } else {
            (None, None)
        };
        // Checkpoints exported from PyTorch may carry precomputed RoPE tables.
        w.discard(&format!("{p}.rotary_emb.inv_freq"));
        Ok(Self {
            qkv,
            o_proj,
            q_norm,
            k_norm,
            rope: Rope::new(c, head_dim)?,
            n_heads,
            n_kv_heads: n_kv,
            head_dim,
        })
    }

    fn forward(&self, x: &Array, adapters: &Adapters, attend: Attend) -> Result<Array> {
        let (b, l) = (x.dim(0), x.dim(1));
        let (q, k, v) = match &self.qkv {
            Qkv::Separate { q, k, v } => (
                adapters.apply(q, x)?,
                adapters.apply(k, x)?,
                adapters.apply(v, x)?,
            ),
            Qkv::Fused(qkv) => {
                let qkv = adapters.apply(qkv, x)?;
                let q_end = (self.n_heads * self.head_dim) as i32;
                let k_end = q_end + (self.n_kv_heads * self.head_dim) as i32;
                let mut parts = qkv.split_at_indices(&[q_end, k_end], -1)?.into_iter();
                let (q, k, v) = (parts.next(), parts.next(), parts.next());
                (q.unwrap(), k.unwrap(), v.unwrap())
            }
        };
        let heads = |t: Array, n: usize| t.reshape(&[b, l, n as i32, -1]);
        let (mut q, mut k) = (heads(q, self.n_heads)?, heads(k, self.n_kv_heads)?);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(&q)?;
            k = kn.forward(&k)?;
        }
        let q = q.transpose_axes(&[0, 2, 1, 3])?;
        let k = k.transpose_axes(&[0, 2, 1, 3])?;
        let v = heads(v, self.n_kv_heads)?.transpose_axes(&[0, 2, 1, 3])?;

        let scale = (self.head_dim as f32).powf(-0.5);
        // A single new query attends to every cached position: no mask.
        // MLX's causal mode aligns the query block with the end of the keys.
        let causal_unless_one = (l > 1).then_some(ScaledDotProductAttentionMask::Causal);
        let out = match attend {
            Attend::Whole if l > 1 && written_out() => {
                // Training and evaluation: see `fused` for why not MLX's kernel.
                let (q, k) = (self.rope.forward(&q, 0)?, self.rope.forward(&k, 0)?);
                causal_attention(&q, &k, &v, scale)?
            }
            Attend::Whole => {
                let (q, k) = (self.rope.forward(&q, 0)?, self.rope.forward(&k, 0)?);
                fast::scaled_dot_product_attention(&q, &k, &v, scale, causal_unless_one, None)?
            }
            Attend::Cached { slot, offset } => {
                let q = self.rope.forward(&q, offset)?;
                let mut k = self.rope.forward(&k, offset)?;
                let mut v = v;
                if let Some((old_k, old_v)) = slot.take() {
                    k = mlx_rs::ops::concatenate(&[old_k, k], 2)?;
                    v = mlx_rs::ops::concatenate(&[old_v, v], 2)?;
                }
                *slot = Some((k.clone(), v.clone()));
                fast::scaled_dot_product_attention(&q, &k, &v, scale, causal_unless_one, None)?
            }
            Attend::Rows {
                slot,
                start,
                positions,
                mask,
            } => {
                let q = self.rope.forward_rows(&q, positions)?;
                let k = self.rope.forward_rows(&k, positions)?;
                let (k, v) = append(slot, &k, &v, start)?;
                let mask = match mask {
                    StepMask::All => None,
                    StepMask::Causal => Some(ScaledDotProductAttentionMask::Causal),
                    StepMask::Array(mask) => Some(ScaledDotProductAttentionMask::Array(mask)),
                };
                fast::scaled_dot_product_attention(&q, &k, &v, scale, mask, None)?
            }
        };
        let out = out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        adapters.apply(&self.o_proj, &out)
    }
}

#[derive(Clone)]
enum GateUp {
    Separate { gate: Linear, up: Linear },
    Fused(Linear),
}

#[derive(Clone)]
struct Mlp {
    gate_up: GateUp,
    down_proj: Linear,
}

impl Mlp {
    fn load(w: &mut WeightMap, p: &str, c: &ModelConfig, layout: BlockLayout) -> Result<Self> {
        let (hidden, inter) = (c.hidden_size, c.intermediate_size);
        let gate_up = if layout.fused_gate_up {
            GateUp::Fused(w.linear(&format!("{p}.gate_up_proj"), hidden, 2 * inter, false)?)
        } else {
            GateUp::Separate {
                gate: w.linear(&format!("{p}.gate_proj"), hidden, inter, false)?,
                up: w.linear(&format!("{p}.up_proj"), hidden, inter, false)?,
            }
        };
        let down_proj = w.linear(&format!("{p}.down_proj"), inter, hidden, false)?;
        Ok(Self { gate_up, down_proj })
    }

    fn forward(&self, x: &Array, adapters: &Adapters) -> Result<Array> {
        let (gate, up) = match &self.gate_up {
            GateUp::Separate { gate, up } => (adapters.apply(gate, x)?, adapters.apply(up, x)?),
            GateUp::Fused(gate_up) => {
                let mut halves = adapters.apply(gate_up, x)?.split_equal(2, -1)?.into_iter();
                (halves.next().unwrap(), halves.next().unwrap())
            }
        };
        adapters.apply(&self.down_proj, &silu(gate)?.multiply(up)?)
    }
}

#[derive(Clone)]
pub(crate) struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    pub(crate) fn load(
        w: &mut WeightMap,
        index: usize,
        c: &ModelConfig,
        layout: BlockLayout,
    ) -> Result<Self> {
        let p = format!("model.layers.{index}");
        Ok(Self {
            self_attn: Attention::load(w, &format!("{p}.self_attn"), c, layout)?,
            mlp: Mlp::load(w, &format!("{p}.mlp"), c, layout)?,
            input_layernorm: w.rms_norm(
                &format!("{p}.input_layernorm"),
                c.hidden_size,
                c.rms_norm_eps,
            )?,
            post_attention_layernorm: w.rms_norm(
                &format!("{p}.post_attention_layernorm"),
                c.hidden_size,
                c.rms_norm_eps,
            )?,
        })
    }

    pub(crate) fn forward(
        &self,
        x: &Array,
        pass: &Pass,
        cache: Option<(&mut Option<(Array, Array)>, usize)>,
    ) -> Result<Array> {
        let attend = match cache {
            Some((slot, offset)) => Attend::Cached { slot, offset },
            None => Attend::Whole,
        };
        self.run(x, &Adapters::Attached(pass), attend)
    }

    /// `forward` for a batch whose rows each use their own adapter of the
    /// model's stack, against a batch cache.
    pub(crate) fn forward_rows(
        &self,
        x: &Array,
        rows: &RowAdapters,
        attend: Attend,
    ) -> Result<Array> {
        self.run(x, &Adapters::PerRow(rows), attend)
    }

    fn run(&self, x: &Array, adapters: &Adapters, attend: Attend) -> Result<Array> {
        let h = x.add(self.self_attn.forward(
            &self.input_layernorm.forward(x)?,
            adapters,
            attend,
        )?)?;
        let out = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?, adapters)?;
        Ok(h.add(out)?)
    }

    /// `forward` without a cache, its activations recomputed in the
    /// backward pass rather than kept. The checkpointed function's inputs
    /// are `x` and this layer's adapter parameters, so that their gradients
    /// flow, and with `trained` (full fine-tuning) the layer's own weights
    /// too (mlx-lm passes the trainable parameters); it holds a copy of the
    /// layer (base weights shared).
    pub(crate) fn forward_checkpointed(
        &self,
        x: &Array,
        pass: &Pass,
        trained: bool,
    ) -> Result<Array> {
        let slots: Vec<usize> = self
            .linears()
            .iter()
            .filter_map(|linear| linear.lora.as_ref())
            .flat_map(|slot| slot.param_indices())
            .collect();
        let mut inputs = vec![x.clone()];
        inputs.extend(slots.iter().map(|&slot| pass.lora[slot].clone()));
        let mut layer = self.clone();
        if trained {
            layer.for_each_weight(|_, weight| inputs.push(weight.clone()));
        }
        let own_from = 1 + slots.len();
        let (count, dropout_seed) = (pass.lora.len(), pass.dropout_seed);
        // Stands in for the other layers' parameters, which this one never reads.
        let unused = Array::from_f32(0.0);
        let mut outputs = checkpointed(&inputs, move |arguments| {
            let mut lora = vec![unused.clone(); count];
            for (&slot, value) in slots.iter().zip(&arguments[1..]) {
                lora[slot] = value.clone();
            }
            let pass = Pass {
                lora: &lora,
                dropout_seed,
                grad_checkpoint: false,
            };
            if !trained {
                return Ok(vec![layer.forward(&arguments[0], &pass, None)?]);
            }
            let mut block = layer.clone();
            let mut own = arguments[own_from..].iter();
            block.for_each_weight(|_, weight| {
                if let Some(value) = own.next() {
                    *weight = value.clone();
                }
            });
            Ok(vec![block.forward(&arguments[0], &pass, None)?])
        })?;
        outputs
            .pop()
            .ok_or_else(|| anyhow!("a checkpointed layer returned nothing"))
    }

    pub(crate) fn linears(&self) -> Vec<&Linear> {
        let mut out = Vec::new();
        match &self.self_attn.qkv {
            Qkv::Separate { q, k, v } => out.extend([q, k, v]),
            Qkv::Fused(qkv) => out.push(qkv),
        }
        out.push(&self.self_attn.o_proj);
        match &self.mlp.gate_up {
            GateUp::Separate { gate, up } => out.extend([gate, up]),
            GateUp::Fused(gate_up) => out.push(gate_up),
        }
        out.push(&self.mlp.down_proj);
        out
    }

    fn norms(&self) -> Vec<&RmsNorm> {
        let mut out = vec![&self.input_layernorm, &self.post_attention_layernorm];
        out.extend(self.self_attn.q_norm.iter());
        out.extend(self.self_attn.k_norm.iter());
        out
    }

    pub(crate) fn parameter_count(&self) -> u64 {
        let linear: usize = self
            .linears()
            .iter()
            .map(|l| l.in_dim * l.out_dim + l.bias.as_ref().map_or(0, |b| b.size()))
            .sum();
        let norms: usize = self.norms().iter().map(|n| n.weight.size()).sum();
        (linear + norms) as u64
    }

    pub(crate) fn eval_weights(&self) -> Result<()> {
        let mut arrays: Vec<&Array> = Vec::new();
        for linear in self.linears() {
            linear.weight.arrays(&mut arrays);
            arrays.extend(linear.bias.iter());
        }
        arrays.extend(self.norms().into_iter().map(|n| &n.weight));
        mlx_rs::transforms::eval(arrays)?;
        Ok(())
    }

    /// Calls `f` with the mlx-lm name (`self_attn.q_proj.weight`,
    /// `input_layernorm.weight`, ...) and value of each weight of the block
    /// that full fine-tuning trains, in a fixed order: each dense linear
    /// layer's weight and bias, then the norms.
    pub(crate) fn for_each_weight(&mut self, mut f: impl FnMut(String, &mut Array)) {
        for (key, linear) in self.linears_mut() {
            if let LinearWeight::Dense(weight) = &mut linear.weight {
                f(format!("{key}.weight"), weight);
            }
            if let Some(bias) = &mut linear.bias {
                f(format!("{key}.bias"), bias);
            }
        }
        for (key, norm) in self.norms_mut() {
            f(format!("{key}.weight"), &mut norm.weight);
        }
    }

    /// The block's norms under mlx-lm's module keys (`input_layernorm`,
    /// `self_attn.q_norm`, ...).
    fn norms_mut(&mut self) -> Vec<(&'static str, &mut RmsNorm)> {
        let mut out: Vec<(&'static str, &mut RmsNorm)> = vec![
            ("input_layernorm", &mut self.input_layernorm),
            (
                "post_attention_layernorm",
                &mut self.post_attention_layernorm,
            ),
        ];
        if let Some(norm) = &mut self.self_attn.q_norm {
            out.push(("self_attn.q_norm", norm));
        }
        if let Some(norm) = &mut self.self_attn.k_norm {
            out.push(("self_attn.k_norm", norm));
        }
        out
    }

    /// The block's linear layers under mlx-lm's module keys
    /// (`self_attn.q_proj`, `mlp.gate_up_proj`, ...), in a fixed order.
    pub(crate) fn linears_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        let mut out: Vec<(&'static str, &mut Linear)> = Vec::new();
        match &mut self.self_attn.qkv {
            Qkv::Separate { q, k, v } => {
                out.push(("self_attn.q_proj", q));
                out.push(("self_attn.k_proj", k));
                out.push(("self_attn.v_proj", v));
            }
            Qkv::Fused(qkv) => out.push(("self_attn.qkv_proj", qkv)),
        }
        out.push(("self_attn.o_proj", &mut self.self_attn.o_proj));
        match &mut self.mlp.gate_up {
            GateUp::Separate { gate, up } => {
                out.push(("mlp.gate_proj", gate));
                out.push(("mlp.up_proj", up));
            }
            GateUp::Fused(gate_up) => out.push(("mlp.gate_up_proj", gate_up)),
        }
        out.push(("mlp.down_proj", &mut self.mlp.down_proj));
        out
    }
}

impl KvCache {
    pub(crate) fn new(layers: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| None).collect(),
            offset: 0,
        }
    }

    pub(crate) fn slot(&mut self, layer: usize) -> (&mut Option<(Array, Array)>, usize) {
        (&mut self.layers[layer], self.offset)
    }

    pub(crate) fn advance(&mut self, positions: usize) {
        self.offset += positions;
    }
}

pub(crate) fn load_layers(
    w: &mut WeightMap,
    c: &ModelConfig,
    layout: BlockLayout,
) -> Result<Vec<DecoderLayer>> {
    (0..c.num_hidden_layers)
        .map(|i| DecoderLayer::load(w, i, c, layout))
        .collect()
}
