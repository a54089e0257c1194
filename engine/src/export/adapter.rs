//! An mlx-lm adapter read for export: each adapted layer's `lora_a`
//! `[in, rank]`, `lora_b` `[rank, out]` and, for DoRA, `m` `[out]`, and the
//! fuse of one base weight with it, as mlx-lm's `fuse` computes it:
//! `W + scale * (A B)^T`, and for DoRA that matrix's rows rescaled to
//! `m / ||row||`. A full fine-tune's folder holds the trained blocks'
//! weights themselves, which replace the base's (as mlx-lm's `fuse` loads
//! them), with nothing to fold in.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use mlx_rs::{Array, Dtype};

use crate::lora::{
    is_full_fine_tune, read_adapter_settings, AdapterSettings, ADAPTER_WEIGHTS_FILE,
};

/// One adapted linear layer.
pub struct AdapterLayer {
    pub lora_a: Array,
    pub lora_b: Array,
    pub magnitude: Option<Array>,
}

pub struct Adapter {
    pub dir: PathBuf,
    pub settings: AdapterSettings,
    /// By module path (`model.layers.3.self_attn.q_proj`), in layer order.
    pub layers: BTreeMap<String, AdapterLayer>,
    /// A full fine-tune's weights (f32) by the base tensor they replace
    /// (`model.layers.3.input_layernorm.weight`); empty for an adapter.
    pub replaced: BTreeMap<String, Array>,
}

impl Adapter {
    /// Reads `adapter_config.json` from `dir` and the weights from
    /// `weights` (a run's numbered checkpoint), else the folder's own
    /// `adapters.safetensors`.
    pub fn open(dir: &Path, weights: Option<&Path>) -> Result<Self> {
        let path = weights
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join(ADAPTER_WEIGHTS_FILE));
        let mut tensors: HashMap<String, Array> = Array::load_safetensors(&path)
            .map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
        if is_full_fine_tune(dir)? {
            return Self::full(dir, &path, tensors);
        }
        let settings = read_adapter_settings(dir)?;
        let mut modules: Vec<String> = tensors
            .keys()
            .filter_map(|k| k.strip_suffix(".lora_a").map(str::to_string))
            .collect();
        modules.sort();
        let mut layers = BTreeMap::new();
        for module in modules {
            let mut take = |suffix: &str| tensors.remove(&format!("{module}.{suffix}"));
            let lora_a = take("lora_a").expect("listed above");
            let lora_b = take("lora_b")
                .ok_or_else(|| anyhow!("{}: `{module}.lora_b` is missing", path.display()))?;
            let magnitude = take("m");
            if settings.dora != magnitude.is_some() {
                bail!(
                    "{}: `{module}` {} a DoRA magnitude `m` but adapter_config.json says {}",
                    path.display(),
                    if magnitude.is_some() { "has" } else { "lacks" },
                    if settings.dora { "dora" } else { "lora" }
                );
            }
            let (a, b) = (lora_a.shape(), lora_b.shape());
            if a.len() != 2 || b.len() != 2 || a[1] != b[0] {
                bail!(
                    "{}: `{module}`: lora_a {a:?} and lora_b {b:?} do not multiply",
                    path.display()
                );
            }
            layers.insert(
                module,
                AdapterLayer {
                    lora_a: lora_a.as_dtype(Dtype::Float32)?,
                    lora_b: lora_b.as_dtype(Dtype::Float32)?,
                    magnitude: magnitude.map(|m| m.as_dtype(Dtype::Float32)).transpose()?,
                },
            );
        }
        if let Some(extra) = tensors.keys().min() {
            bail!(
                "{}: `{extra}` is not a LoRA tensor (expected `.lora_a`, `.lora_b`, `.m`)",
                path.display()
            );
        }
        if layers.is_empty() {
            bail!("{}: the adapter has no layers", path.display());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            settings,
            layers,
            replaced: BTreeMap::new(),
        })
    }

    fn full(dir: &Path, path: &Path, tensors: HashMap<String, Array>) -> Result<Self> {
        if tensors.is_empty() {
            bail!("{}: the full fine-tune holds no weights", path.display());
        }
        let replaced = tensors
            .into_iter()
            .map(|(name, w)| Ok((name, w.as_dtype(Dtype::Float32)?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            settings: AdapterSettings {
                num_layers: -1,
                rank: 0,
                scale: 0.0,
                dropout: 0.0,
                keys: None,
                dora: false,
            },
            layers: BTreeMap::new(),
            replaced,
        })
    }

    /// A full fine-tune: weights that replace the base's, no adapter.
    pub fn is_full(&self) -> bool {
        !self.replaced.is_empty()
    }

    /// Whether the export's tensor `name` differs from the base's.
    pub fn changes(&self, name: &str) -> bool {
        self.replaced.contains_key(name) || self.layer_for(name).is_some()
    }

    /// The layer adapting the base tensor `weight_name` (`X.weight`).
    pub fn layer_for(&self, weight_name: &str) -> Option<&AdapterLayer> {
        self.layers.get(weight_name.strip_suffix(".weight")?)
    }

    /// Checks that every adapted module is a matrix of the base with the
    /// adapter's shapes; `shape_of` gives a base tensor's logical shape.
    pub fn check_against(&self, shape_of: impl Fn(&str) -> Option<Vec<usize>>) -> Result<()> {
        for (name, weight) in &self.replaced {
            let shape: Vec<usize> = weight.shape().iter().map(|&d| d as usize).collect();
            match shape_of(name) {
                None => bail!("the full fine-tune's `{name}` is not a tensor of the base model"),
                Some(base) if base != shape => bail!(
                    "the full fine-tune's `{name}` {shape:?} does not fit the base's {base:?}: \
                     was it trained on another model?"
                ),
                Some(_) => {}
            }
        }
        for (module, layer) in &self.layers {
            let name = format!("{module}.weight");
            let Some(shape) = shape_of(&name) else {
                bail!("the adapter's `{module}` is not a layer of the base model");
            };
            let (a, b) = (layer.lora_a.shape(), layer.lora_b.shape());
            if shape.len() != 2 || a[0] as usize != shape[1] || b[1] as usize != shape[0] {
                bail!(
                    "the adapter's `{module}` (lora_a {a:?}, lora_b {b:?}) does not fit the base's \
                     `{name}` {shape:?}: was it trained on another model?"
                );
            }
        }
        Ok(())
    }

    /// `W` `[out, in]` (f32) with the layer's update folded in.
    pub fn fuse(&self, layer: &AdapterLayer, weight: &Array) -> Result<Array> {
        let update = layer
            .lora_b
            .t()
            .matmul(layer.lora_a.t())?
            .multiply(Array::from_f32(self.settings.scale))?;
        let fused = weight.add(update)?;
        Ok(match &layer.magnitude {
            None => fused,
            Some(m) => {
                let norms = fused.square()?.sum_axis(1, None)?.sqrt()?;
                let factor = m.divide(norms)?.expand_dims(1)?;
                fused.multiply(factor)?
            }
        })
    }

    /// The layer indices the adapter touches.
    pub fn layer_indices(&self) -> Vec<usize> {
        let mut indices: Vec<usize> = self
            .layers
            .keys()
            .filter_map(|m| {
                m.strip_prefix("model.layers.")?
                    .split('.')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        indices.sort_unstable();
        indices.dedup();
        indices
    }

    /// The adapted modules' last names (`q_proj`, `down_proj`, ...), sorted.
    pub fn target_modules(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .layers
            .keys()
            .filter_map(|m| m.rsplit('.').next().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
