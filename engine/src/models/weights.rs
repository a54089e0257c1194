//! Taking a model's tensors out of a name -> array map by their Hugging Face
//! names, checking every shape, and turning them into the compute layout
//! (dense or MLX affine-quantized). Anything missing, misshaped or left over
//! is an error that names the tensor.

use std::collections::{BTreeSet, HashMap};

use anyhow::{anyhow, bail, Context, Result};
use mlx_rs::{ops::dequantize, Array, Dtype};

use super::layers::{Embedding, Linear, LinearWeight, RmsNorm};

/// How base weights are held while computing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Keep each tensor's own dtype and keep quantized weights quantized
    /// (GPU: quantized matmuls are fast there).
    Keep,
    /// Dequantize everything and cast floating weights to this dtype.
    Dense(Dtype),
}

pub(crate) struct WeightMap {
    tensors: HashMap<String, Array>,
    placement: Placement,
}

impl WeightMap {
    pub(crate) fn new(tensors: HashMap<String, Array>, placement: Placement) -> Self {
        Self { tensors, placement }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Drops tensors that checkpoints carry but the model recomputes.
    pub(crate) fn discard(&mut self, name: &str) {
        self.tensors.remove(name);
    }

    fn take_raw(&mut self, name: &str) -> Result<Array> {
        self.tensors
            .remove(name)
            .ok_or_else(|| anyhow!("missing tensor `{name}`"))
    }

    fn cast(&self, array: Array) -> Result<Array> {
        match self.placement {
            Placement::Dense(dtype) if array.dtype() != dtype => Ok(array.as_dtype(dtype)?),
            _ => Ok(array),
        }
    }

    /// A plain (never quantized) tensor with an exact shape.
    pub(crate) fn take(&mut self, name: &str, shape: &[i32]) -> Result<Array> {
        let array = self.take_raw(name)?;
        check_shape(name, &array, shape)?;
        self.cast(array)
    }

    pub(crate) fn rms_norm(&mut self, prefix: &str, dim: usize, eps: f32) -> Result<RmsNorm> {
        let weight = self.take(&format!("{prefix}.weight"), &[dim as i32])?;
        Ok(RmsNorm { weight, eps })
    }

    /// A `[out, in]` matrix, dense or as a quantized triple
    /// (`weight` packed u32, `scales`, `biases`).
    fn matrix(&mut self, prefix: &str, out_dim: usize, in_dim: usize) -> Result<LinearWeight> {
        let name = format!("{prefix}.weight");
        let scales_name = format!("{prefix}.scales");
        if !self.contains(&scales_name) {
            let weight = self.take(&name, &[out_dim as i32, in_dim as i32])?;
            return Ok(LinearWeight::Dense(weight));
        }
        let weight = self.take_raw(&name)?;
        let scales = self.take_raw(&scales_name)?;
        let biases_name = format!("{prefix}.biases");
        let biases = self.take_raw(&biases_name)?;
        let (group_size, bits) = infer_quantization(&name, &weight, &scales, out_dim, in_dim)?;
        if weight.dtype() != Dtype::Uint32 {
            bail!(
                "tensor `{name}`: quantized weights must be packed uint32, found {:?}",
                weight.dtype()
            );
        }
        check_shape(&biases_name, &biases, scales.shape())?;
        match self.placement {
            Placement::Keep => Ok(LinearWeight::Quantized {
                weight,
                scales,
                biases,
                group_size,
                bits,
            }),
            Placement::Dense(dtype) => {
                let dense = dequantize(&weight, &scales, &biases, group_size, bits)
                    .with_context(|| format!("dequantizing `{name}`"))?;
                Ok(LinearWeight::Dense(dense.as_dtype(dtype)?))
            }
        }
    }

    pub(crate) fn linear(
        &mut self,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Linear> {
        let weight = self.matrix(prefix, out_dim, in_dim)?;
        let bias = if bias {
            Some(self.take(&format!("{prefix}.bias"), &[out_dim as i32])?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            in_dim,
            out_dim,
            lora: None,
            stacked: None,
        })
    }

    pub(crate) fn embedding(
        &mut self,
        prefix: &str,
        vocab: usize,
        dim: usize,
    ) -> Result<Embedding> {
        Ok(Embedding {
            weight: self.matrix(prefix, vocab, dim)?,
        })
    }

    /// Every tensor must have found its place in the model.
    pub(crate) fn finish(self) -> Result<()> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let names: BTreeSet<&String> = self.tensors.keys().collect();
        let shown: Vec<&str> = names.iter().take(8).map(|s| s.as_str()).collect();
        bail!(
            "{} unexpected tensor(s) for this architecture: {}{}",
            names.len(),
            shown.join(", "),
            if names.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        )
    }
}

fn check_shape(name: &str, array: &Array, shape: &[i32]) -> Result<()> {
    if array.shape() != shape {
        bail!(
            "tensor `{name}` has shape {:?}, expected {:?}",
            array.shape(),
            shape
        );
    }
    Ok(())
}

/// Reads bits and group size off the packed shapes: per-layer quantization
/// (mlx-community's mixed recipes, GGUF) makes any single config value unreliable.
fn infer_quantization(
    name: &str,
    weight: &Array,
    scales: &Array,
    out_dim: usize,
    in_dim: usize,
) -> Result<(i32, i32)> {
    let (ws, ss) = (weight.shape(), scales.shape());
    let bad = || {
        anyhow!(
            "tensor `{name}`: quantized shapes weight {ws:?} / scales {ss:?} do not fit a [{out_dim}, {in_dim}] matrix"
        )
    };
    if ws.len() != 2 || ss.len() != 2 || ws[0] as usize != out_dim || ss[0] as usize != out_dim {
        return Err(bad());
    }
    let packed = ws[1] as usize;
    let groups = ss[1] as usize;
    if groups == 0 || !in_dim.is_multiple_of(groups) || !(packed * 32).is_multiple_of(in_dim) {
        return Err(bad());
    }
    let bits = packed * 32 / in_dim;
    let group_size = in_dim / groups;
    if ![2, 3, 4, 5, 6, 8].contains(&bits) || ![32, 64, 128].contains(&group_size) {
        return Err(bad());
    }
    Ok((group_size as i32, bits as i32))
}
