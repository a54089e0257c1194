//! Many adapters on one base at once, for batched generation: each row of a
//! batch names one adapter (or none, the bare base). A linear layer runs its
//! base matmul once for the whole batch, then adds every row's own low-rank
//! product. The adapters' `lora_a` matrices are concatenated along the rank
//! axis (`[in, R]`, `R` the sum of their ranks) and their `lora_b` along the
//! same axis (`[R, out]`), so the rows' products are two small matmuls for
//! the batch: `((x A) * M) B * s`, where `M` keeps, for each row, only its
//! own adapter's rank columns and `s` is its adapter's scale. A base row
//! keeps none and gets exactly `W x + b`. (S-LoRA and punica gather each
//! row's matrices instead; on the CPU that copies more than it saves.)
//!
//! DoRA rows are rescaled by their adapter's factor `m / ||W + s (A B)^T||`,
//! a constant at inference, computed once when the adapters are stacked.

use anyhow::{anyhow, bail, Result};
use mlx_rs::{Array, Dtype};

use super::layers::{Linear, Pass};
use super::Model;

/// The adapters of a stack that adapt one linear layer.
#[derive(Clone)]
pub(crate) struct StackedLinear {
    /// `[in, R]`: the members' `lora_a`, side by side.
    a: Array,
    /// `[R, out]`: their `lora_b`, stacked.
    b: Array,
    /// `[R]`: the stack index of the adapter owning each rank column.
    owner: Array,
    /// Stack indices of the adapters present here.
    members: Vec<usize>,
    /// DoRA: `[adapters + 1, out]`, each adapter's row factor (ones for a
    /// LoRA adapter and, in the last row, for base rows), and which stack
    /// indices are DoRA (`[adapters + 1]`). `None` when no member is DoRA.
    dora: Option<(Array, Array)>,
}

/// Which adapter each row of a batch uses, in the forms the layers read.
pub struct RowAdapters {
    /// Stack index per row; `None` is the bare base.
    rows: Vec<Option<usize>>,
    /// `[B, 1, 1]` int32: the stack index, -1 for base rows.
    index: Array,
    /// `[B, 1, 1]` f32: the row adapter's scale (0 for base rows).
    scale: Array,
    /// `[B]` int32: the row of a DoRA factor table (`adapters` for base).
    dora_row: Array,
}

impl RowAdapters {
    /// `rows[i]` is row i's adapter in `model`'s stack.
    pub fn new(model: &Model, rows: &[Option<usize>]) -> Result<Self> {
        let count = model.stacked_adapters();
        let scales = &model.stacked_scales;
        if let Some((row, index)) = rows
            .iter()
            .enumerate()
            .find_map(|(row, a)| a.filter(|&i| i >= count).map(|i| (row, i)))
        {
            bail!("row {row} asks for adapter {index}, but {count} are stacked on the model");
        }
        let b = rows.len() as i32;
        let index: Vec<i32> = rows.iter().map(|a| a.map_or(-1, |i| i as i32)).collect();
        let scale: Vec<f32> = rows.iter().map(|a| a.map_or(0.0, |i| scales[i])).collect();
        let dora_row: Vec<i32> = rows.iter().map(|a| a.unwrap_or(count) as i32).collect();
        Ok(Self {
            rows: rows.to_vec(),
            index: Array::from_slice(&index, &[b, 1, 1]),
            scale: Array::from_slice(&scale, &[b, 1, 1]),
            dora_row: Array::from_slice(&dora_row, &[b]),
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The adapters of the rows kept (by position), in that order.
    pub fn keep(&self, model: &Model, kept: &[usize]) -> Result<Self> {
        let rows: Vec<Option<usize>> = kept.iter().map(|&i| self.rows[i]).collect();
        Self::new(model, &rows)
    }

    fn uses_any(&self, members: &[usize]) -> bool {
        self.rows
            .iter()
            .any(|row| row.is_some_and(|i| members.contains(&i)))
    }
}

impl Linear {
    /// `forward` where each row of `x` (`[B, L, in]`) has its own adapter
    /// from the stack (see the module's comment). The order of additions is
    /// that of `forward` with the row's adapter attached: `(W x + b) + d`
    /// for LoRA, `(W x + d) m + b` for DoRA.
    pub(crate) fn forward_rows(&self, x: &Array, rows: &RowAdapters) -> Result<Array> {
        let y = self.weight.apply(x)?;
        let with_bias = |y: Array| -> Result<Array> {
            Ok(match &self.bias {
                Some(bias) => y.add(bias)?,
                None => y,
            })
        };
        let Some(stack) = self.stacked.as_ref().filter(|s| rows.uses_any(&s.members)) else {
            return with_bias(y);
        };
        let mine = rows.index.eq(&stack.owner)?.as_dtype(Dtype::Float32)?;
        let delta = x
            .matmul(&stack.a)?
            .multiply(&mine)?
            .matmul(&stack.b)?
            .multiply(&rows.scale)?
            .as_dtype(x.dtype())?;
        let Some((factors, is_dora)) = &stack.dora else {
            return Ok(with_bias(y)?.add(&delta)?);
        };
        let b = x.dim(0);
        let lora = with_bias(y.clone())?.add(&delta)?;
        let factor = factors
            .take_axis(&rows.dora_row, 0)?
            .reshape(&[b, 1, -1])?
            .as_dtype(x.dtype())?;
        let dora = with_bias(y.add(&delta)?.multiply(&factor)?)?;
        let dora_rows = is_dora.take_axis(&rows.dora_row, 0)?.reshape(&[b, 1, 1])?;
        Ok(mlx_rs::ops::select(&dora_rows, &dora, &lora)?)
    }
}

/// One adapted linear layer of an adapter: its place (layer, position in
/// `DecoderLayer::linears`), `lora_a`, `lora_b` and DoRA factor.
type AdaptedLinear = ((usize, usize), (Array, Array, Option<Array>));

/// Per adapter of a stack: its scale, and its adapted linear layers.
struct Member {
    scale: f32,
    dora: bool,
    slots: Vec<AdaptedLinear>,
}

impl Model {
    /// A copy of this base (weights shared) carrying every model in
    /// `adapted` as one stack: adapter `i` of a [`RowAdapters`] is
    /// `adapted[i]`'s. Each `adapted` model is this base with one adapter
    /// attached (`lora::load_adapters` on a clone).
    pub fn with_stacked_adapters(&self, adapted: &[Model]) -> Result<Model> {
        if self.lora.is_some() {
            bail!("stack adapters on the bare base, not on one with an adapter attached");
        }
        let mut members = Vec::with_capacity(adapted.len());
        for (i, model) in adapted.iter().enumerate() {
            let lora = model
                .lora
                .as_ref()
                .ok_or_else(|| anyhow!("adapter {i} of the stack has no adapter attached"))?;
            if model.layers.len() != self.layers.len() {
                bail!("adapter {i} of the stack is on a model of another shape");
            }
            let pass = Pass {
                lora: &lora.params,
                dropout_seed: None,
                grad_checkpoint: false,
            };
            let mut slots = Vec::new();
            for (layer_index, layer) in model.layers.iter().enumerate() {
                for (position, linear) in layer.linears().into_iter().enumerate() {
                    let Some(slot) = &linear.lora else { continue };
                    let a = lora.params[slot.index].clone();
                    let b = lora.params[slot.index + 1].clone();
                    let factor = if slot.dora {
                        Some(slot.magnitude_scale(&linear.weight, &pass)?)
                    } else {
                        None
                    };
                    slots.push(((layer_index, position), (a, b, factor)));
                }
            }
            members.push(Member {
                scale: lora.settings.scale,
                dora: lora.settings.dora,
                slots,
            });
        }
        let mut stacked = self.clone();
        for (layer_index, layer) in stacked.layers.iter_mut().enumerate() {
            for (position, (_, linear)) in layer.linears_mut().into_iter().enumerate() {
                linear.stacked = stack_linear(&members, (layer_index, position), linear)?;
            }
        }
        stacked.stacked_scales = members.iter().map(|m| m.scale).collect();
        Ok(stacked)
    }

    /// How many adapters are stacked (see [`Self::with_stacked_adapters`]).
    pub fn stacked_adapters(&self) -> usize {
        self.stacked_scales.len()
    }
}

fn stack_linear(
    members: &[Member],
    at: (usize, usize),
    linear: &Linear,
) -> Result<Option<Box<StackedLinear>>> {
    let count = members.len();
    let (mut a, mut b, mut owner, mut present) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut factors: Vec<Option<Array>> = vec![None; count];
    for (i, member) in members.iter().enumerate() {
        let Some((_, (ma, mb, factor))) = member.slots.iter().find(|(key, _)| *key == at) else {
            continue;
        };
        let rank = ma.dim(1);
        a.push(ma.clone());
        b.push(mb.clone());
        owner.extend(std::iter::repeat_n(i as i32, rank as usize));
        present.push(i);
        factors[i] = factor.clone();
    }
    if present.is_empty() {
        return Ok(None);
    }
    let dora = if factors.iter().any(Option::is_some) {
        let ones = Array::ones::<f32>(&[linear.out_dim as i32])?;
        let rows: Vec<Array> = factors
            .iter()
            .map(|f| f.clone().unwrap_or_else(|| ones.clone()))
            .chain(std::iter::once(ones.clone()))
            .collect();
        let is_dora: Vec<bool> = (0..=count)
            .map(|i| i < count && members[i].dora && factors[i].is_some())
            .collect();
        Some((
            mlx_rs::ops::stack(&rows, 0)?,
            Array::from_slice(&is_dora, &[count as i32 + 1]),
        ))
    } else {
        None
    };
    let r = owner.len() as i32;
    let stacked = StackedLinear {
        a: mlx_rs::ops::concatenate(&a, 1)?,
        b: mlx_rs::ops::concatenate(&b, 0)?,
        owner: Array::from_slice(&owner, &[r]),
        members: present,
        dora,
    };
    let mut arrays = vec![&stacked.a, &stacked.b];
    if let Some((factors, _)) = &stacked.dora {
        arrays.push(factors);
    }
    mlx_rs::transforms::eval(arrays)?;
    Ok(Some(Box::new(stacked)))
}
