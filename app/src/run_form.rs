//! The new-run form, from the posted text to a `TrainConfig` and back.
//! A plain HTML form posts text, so [`NewRunForm::overrides`] reads it into
//! typed [`RunOverrides`] (a bad value names its field), which apply over
//! the chosen preset or, for a clone, over the original run's config; and
//! [`NewRunForm::from_config`] fills the form from a stored config. A
//! setting the form offers lives here and in the view (`pages/new_run.rs`).

use loralab_types::config::{EarlyStopping, FineTuneType, QuantizeOnLoad, TrainConfig};
use serde::{Deserialize, Serialize};

/// The new-run form, as posted. Empty fields take the preset's value (a
/// clone's: the original's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewRunForm {
    pub name: Option<String>,
    pub model: String,
    pub dataset: String,
    pub preset: Option<String>,
    /// `lora`, `qlora`, `dora` or `full`.
    pub fine_tune: Option<String>,
    pub bits: Option<String>,
    pub iters: Option<String>,
    pub batch_size: Option<String>,
    pub learning_rate: Option<String>,
    pub rank: Option<String>,
    pub num_layers: Option<String>,
    pub max_seq_length: Option<String>,
    pub mask_prompt: Option<String>,
    /// Early stopping's patience in evaluations; 0 turns it off.
    pub patience: Option<String>,
    pub min_delta: Option<String>,
    /// Numbered checkpoints kept (the best, plus the latest); 0 keeps all.
    pub keep_checkpoints: Option<String>,
    /// `true`: recompute activations in the backward pass (less memory).
    pub grad_checkpoint: Option<String>,
    /// `true`: write TensorBoard event files (`tensorboard` in the config).
    pub tensorboard: Option<String>,
    pub steps_per_eval: Option<String>,
    pub save_every: Option<String>,
    pub seed: Option<String>,
    /// Data-parallel ranks (`gpus`): one GPU each on CUDA; empty: 1.
    pub gpus: Option<String>,
    /// A machine set of the Machines page to train on (`machine_set`);
    /// empty: this machine.
    pub machine_set: Option<String>,
    /// The run this form was cloned from: its stored config is the base the
    /// fields apply to (not a preset), so an unchanged clone is an exact copy.
    pub clone_of: Option<String>,
    /// `true`: queue it even if the memory estimate does not fit.
    pub force: Option<String>,
    /// The thermal guard: `true` / `false`, and its thresholds in °C
    /// (`thermal_guard` in the config; empty: the defaults).
    pub guard: Option<String>,
    pub guard_cpu_c: Option<String>,
    pub guard_gpu_c: Option<String>,
    pub guard_resume_c: Option<String>,
}

/// What the type picker chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FineTune {
    Lora,
    /// LoRA on a base quantized to `bits` on load.
    Qlora {
        bits: u8,
    },
    Dora,
    /// The top layers' own weights (a quantized base's are dequantized).
    Full,
}

/// The form's settings, typed. `None`: the field was left empty, so the
/// preset's (or the clone's) value stands.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOverrides {
    pub iters: Option<usize>,
    pub batch_size: Option<usize>,
    pub learning_rate: Option<f64>,
    pub rank: Option<usize>,
    pub num_layers: Option<i64>,
    pub max_seq_length: Option<usize>,
    pub steps_per_eval: Option<usize>,
    pub save_every: Option<usize>,
    pub seed: Option<u64>,
    pub gpus: Option<usize>,
    /// `Some(None)`: this machine; `None`: as the base config has it.
    pub machine_set: Option<Option<String>>,
    /// 0 turns early stopping off.
    pub patience: Option<usize>,
    pub min_delta: Option<f64>,
    /// 0 keeps every checkpoint.
    pub keep_checkpoints: Option<usize>,
    // The pickers always send a choice.
    pub fine_tune: FineTune,
    pub mask_prompt: bool,
    pub grad_checkpoint: bool,
    pub tensorboard: bool,
    pub guard: Option<bool>,
    pub guard_cpu_c: Option<f64>,
    pub guard_gpu_c: Option<f64>,
    pub guard_resume_c: Option<f64>,
}

/// A field's text, trimmed; `None` when left empty.
fn filled(field: &Option<String>) -> Option<&str> {
    field
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// A filled-in number; the error names `key` and says what `expected` is.
fn number<T: std::str::FromStr>(
    key: &str,
    field: &Option<String>,
    expected: &str,
) -> Result<Option<T>, String> {
    filled(field)
        .map(|text| {
            text.parse()
                .map_err(|_| format!("{key}: {text:?} is not {expected}"))
        })
        .transpose()
}

fn whole(key: &str, field: &Option<String>) -> Result<Option<usize>, String> {
    number(key, field, "a valid number")
}

/// A finite real number (`inf` and `NaN` parse, but no setting takes them).
fn real(key: &str, field: &Option<String>, expected: &str) -> Result<Option<f64>, String> {
    match number::<f64>(key, field, expected)? {
        Some(value) if !value.is_finite() => Err(format!(
            "{key}: {:?} is not {expected}",
            filled(field).unwrap_or_default()
        )),
        value => Ok(value),
    }
}

impl NewRunForm {
    /// The form a "Check" button sent, from its `form[...]` fields; `None`
    /// without a model and a dataset (the page was opened plainly).
    pub fn from_fields(field: impl Fn(&str) -> Option<String>) -> Option<Self> {
        Some(Self {
            name: field("name"),
            model: field("model")?,
            dataset: field("dataset")?,
            preset: field("preset"),
            fine_tune: field("fine_tune"),
            bits: field("bits"),
            iters: field("iters"),
            batch_size: field("batch_size"),
            learning_rate: field("learning_rate"),
            rank: field("rank"),
            num_layers: field("num_layers"),
            max_seq_length: field("max_seq_length"),
            mask_prompt: field("mask_prompt"),
            patience: field("patience"),
            min_delta: field("min_delta"),
            keep_checkpoints: field("keep_checkpoints"),
            grad_checkpoint: field("grad_checkpoint"),
            tensorboard: field("tensorboard"),
            steps_per_eval: field("steps_per_eval"),
            save_every: field("save_every"),
            seed: field("seed"),
            gpus: field("gpus"),
            machine_set: field("machine_set"),
            force: field("force"),
            clone_of: field("clone_of"),
            guard: field("guard"),
            guard_cpu_c: field("guard_cpu_c"),
            guard_gpu_c: field("guard_gpu_c"),
            guard_resume_c: field("guard_resume_c"),
        })
    }

    /// The filled-in settings, each parsed; a bad one is named.
    pub fn overrides(&self) -> Result<RunOverrides, String> {
        let fine_tune = match self.fine_tune.as_deref().unwrap_or("lora") {
            "lora" => FineTune::Lora,
            "dora" => FineTune::Dora,
            "full" => FineTune::Full,
            "qlora" => match self.bits.as_deref().unwrap_or("4") {
                "4" => FineTune::Qlora { bits: 4 },
                "8" => FineTune::Qlora { bits: 8 },
                _ => return Err("bits: must be 4 or 8".into()),
            },
            other => {
                return Err(format!(
                    "fine_tune: unknown type {other:?} (lora, qlora, dora or full)"
                ))
            }
        };
        let guard = match self.guard.as_deref() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        let degrees = |key, field| real(key, field, "a number (°C)");
        Ok(RunOverrides {
            iters: whole("iters", &self.iters)?,
            batch_size: whole("batch_size", &self.batch_size)?,
            learning_rate: real("learning_rate", &self.learning_rate, "a valid number")?,
            rank: number("rank", &self.rank, "a whole number")?,
            num_layers: number("num_layers", &self.num_layers, "a valid number")?,
            max_seq_length: whole("max_seq_length", &self.max_seq_length)?,
            steps_per_eval: whole("steps_per_eval", &self.steps_per_eval)?,
            save_every: whole("save_every", &self.save_every)?,
            seed: number("seed", &self.seed, "a valid number")?,
            gpus: whole("gpus", &self.gpus)?,
            machine_set: self
                .machine_set
                .as_ref()
                .map(|set| Some(set.trim().to_string()).filter(|set| !set.is_empty())),
            patience: number("early_stopping.patience", &self.patience, "a whole number")?,
            min_delta: real(
                "early_stopping.min_delta",
                &self.min_delta,
                "a valid number",
            )?,
            keep_checkpoints: number("keep_checkpoints", &self.keep_checkpoints, "a whole number")?,
            fine_tune,
            mask_prompt: self.mask_prompt.as_deref().unwrap_or("true") == "true",
            grad_checkpoint: self.grad_checkpoint.as_deref() == Some("true"),
            // An unticked checkbox sends nothing: off, also for a clone of
            // a run that had it on.
            tensorboard: self.tensorboard.as_deref() == Some("true"),
            guard,
            guard_cpu_c: degrees("guard_cpu_c", &self.guard_cpu_c)?,
            guard_gpu_c: degrees("guard_gpu_c", &self.guard_gpu_c)?,
            guard_resume_c: degrees("guard_resume_c", &self.guard_resume_c)?,
        })
    }

    /// The config this form runs: the filled-in fields over `cloned` (the
    /// original run's config, for a clone) or over the chosen preset.
    /// `model` and `data` are left for the server to set.
    pub fn train_config(&self, cloned: Option<TrainConfig>) -> Result<TrainConfig, String> {
        let preset = crate::presets::preset(self.preset.as_deref()).ok_or_else(|| {
            format!(
                "preset: unknown preset {:?}",
                self.preset.clone().unwrap_or_default()
            )
        })?;
        let overrides = self.overrides()?;
        let mut config = cloned.unwrap_or_else(|| {
            let mut fresh = TrainConfig::default();
            preset.apply(&mut fresh);
            fresh
        });
        overrides.apply(&mut config);
        Ok(config)
    }

    /// An earlier run's settings as the form shows them for a clone: every
    /// field filled, so the preset does not matter.
    pub fn from_config(
        clone_of: i64,
        name: &str,
        model: String,
        dataset: String,
        config: &TrainConfig,
    ) -> Self {
        let fine_tune = match (config.fine_tune_type, &config.quantize) {
            (FineTuneType::Dora, _) => "dora",
            (FineTuneType::Full, _) => "full",
            (_, Some(_)) => "qlora",
            _ => "lora",
        };
        let guard = &config.thermal_guard;
        let early = config.early_stopping.as_ref();
        NewRunForm {
            name: Some(format!("{name} (copy)")),
            model,
            dataset,
            preset: None,
            fine_tune: Some(fine_tune.into()),
            bits: config.quantize.map(|quantize| quantize.bits.to_string()),
            iters: Some(config.iters.to_string()),
            batch_size: Some(config.batch_size.to_string()),
            learning_rate: Some(config.learning_rate.to_string()),
            rank: Some(config.lora_parameters.rank.to_string()),
            num_layers: Some(config.num_layers.to_string()),
            max_seq_length: Some(config.max_seq_length.to_string()),
            mask_prompt: Some(config.mask_prompt.to_string()),
            // 0: off, as the original had it.
            patience: Some(early.map_or(0, |early| early.patience).to_string()),
            min_delta: Some(early.map_or(0.0, |early| early.min_delta).to_string()),
            keep_checkpoints: Some(config.keep_checkpoints.unwrap_or(0).to_string()),
            grad_checkpoint: Some(config.grad_checkpoint.to_string()),
            tensorboard: Some(config.tensorboard.to_string()),
            steps_per_eval: Some(config.steps_per_eval.to_string()),
            save_every: Some(config.save_every.to_string()),
            seed: Some(config.seed.to_string()),
            gpus: Some(config.gpus.to_string()),
            machine_set: Some(config.machine_set.clone().unwrap_or_default()),
            clone_of: Some(clone_of.to_string()),
            force: None,
            guard: Some(guard.enabled.to_string()),
            guard_cpu_c: Some(guard.cpu_pause_c.to_string()),
            guard_gpu_c: Some(guard.gpu_pause_c.to_string()),
            guard_resume_c: Some(guard.resume_below_c.to_string()),
        }
    }
}

impl RunOverrides {
    /// Sets every filled-in setting on `config`. The LoRA scale, dropout and
    /// target keys, and a QLoRA group size, stay as `config` has them.
    pub fn apply(&self, config: &mut TrainConfig) {
        fn set<T: Copy>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        set(&mut config.iters, self.iters);
        set(&mut config.batch_size, self.batch_size);
        set(&mut config.learning_rate, self.learning_rate);
        set(&mut config.lora_parameters.rank, self.rank);
        set(&mut config.num_layers, self.num_layers);
        set(&mut config.max_seq_length, self.max_seq_length);
        set(&mut config.steps_per_eval, self.steps_per_eval);
        set(&mut config.save_every, self.save_every);
        set(&mut config.seed, self.seed);
        set(&mut config.gpus, self.gpus);
        if let Some(set) = &self.machine_set {
            config.machine_set = set.clone();
        }
        let early = config.early_stopping.as_ref();
        let patience = self
            .patience
            .unwrap_or_else(|| early.map_or(0, |early| early.patience));
        let min_delta = self
            .min_delta
            .unwrap_or_else(|| early.map_or(0.0, |early| early.min_delta));
        config.early_stopping = (patience > 0).then_some(EarlyStopping {
            patience,
            min_delta,
        });
        if let Some(keep) = self.keep_checkpoints {
            config.keep_checkpoints = (keep > 0).then_some(keep);
        }
        let group_size = config.quantize.map(|quantize| quantize.group_size);
        (config.fine_tune_type, config.quantize) = match self.fine_tune {
            FineTune::Lora => (FineTuneType::Lora, None),
            FineTune::Dora => (FineTuneType::Dora, None),
            FineTune::Full => (FineTuneType::Full, None),
            FineTune::Qlora { bits } => {
                let mut quantize = QuantizeOnLoad::with_bits(bits);
                set(&mut quantize.group_size, group_size);
                (FineTuneType::Lora, Some(quantize))
            }
        };
        config.mask_prompt = self.mask_prompt;
        config.grad_checkpoint = self.grad_checkpoint;
        config.tensorboard = self.tensorboard;
        let guard = &mut config.thermal_guard;
        set(&mut guard.enabled, self.guard);
        set(&mut guard.cpu_pause_c, self.guard_cpu_c);
        set(&mut guard.gpu_pause_c, self.guard_gpu_c);
        set(&mut guard.resume_below_c, self.guard_resume_c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(preset: &str) -> NewRunForm {
        NewRunForm {
            model: "tiny".into(),
            dataset: "ahoy".into(),
            preset: Some(preset.into()),
            ..NewRunForm::default()
        }
    }

    #[test]
    fn a_preset_and_filled_fields_make_the_config() {
        let config = NewRunForm {
            iters: Some(" 12 ".into()),
            rank: Some("4".into()),
            patience: Some("2".into()),
            fine_tune: Some("qlora".into()),
            bits: Some("8".into()),
            guard_cpu_c: Some("90".into()),
            ..form("thorough")
        }
        .train_config(None)
        .unwrap();
        assert_eq!(config.iters, 12);
        assert_eq!(config.lora_parameters.rank, 4);
        assert_eq!(config.batch_size, 4, "the preset's");
        assert_eq!(config.num_layers, -1, "the preset's");
        assert_eq!(config.lora_parameters.scale, 20.0, "mlx-lm's default");
        assert_eq!(
            config.early_stopping,
            Some(EarlyStopping {
                patience: 2,
                min_delta: 0.0
            })
        );
        assert_eq!(config.keep_checkpoints, Some(3), "the preset's");
        assert_eq!(config.quantize, Some(QuantizeOnLoad::with_bits(8)));
        assert_eq!(config.quantize.unwrap().group_size, 64);
        assert!(config.mask_prompt && config.test && !config.grad_checkpoint);
        assert_eq!(config.thermal_guard.cpu_pause_c, 90.0);
        assert_eq!(config.thermal_guard.gpu_pause_c, 85.0);
    }

    #[test]
    fn the_machine_set_choice_reaches_the_config_and_a_clone_keeps_it() {
        let on_set = NewRunForm {
            machine_set: Some(" lab ".into()),
            ..form("quick")
        }
        .train_config(None)
        .unwrap();
        assert_eq!(on_set.machine_set.as_deref(), Some("lab"));
        let cloned = NewRunForm::from_config(1, "run", "tiny".into(), "ahoy".into(), &on_set);
        assert_eq!(cloned.machine_set.as_deref(), Some("lab"));
        assert_eq!(
            cloned
                .train_config(Some(on_set.clone()))
                .unwrap()
                .machine_set
                .as_deref(),
            Some("lab")
        );
        // "this machine" (an empty choice) takes a clone off the set.
        let here = NewRunForm {
            machine_set: Some(String::new()),
            ..cloned
        }
        .train_config(Some(on_set))
        .unwrap();
        assert_eq!(here.machine_set, None);
    }

    #[test]
    fn bad_fields_are_named() {
        let text = |value: &str| Some(value.to_string());
        let cases = [
            (
                NewRunForm {
                    iters: text("abc"),
                    ..form("quick")
                },
                "iters: \"abc\" is not a valid number",
            ),
            (
                NewRunForm {
                    learning_rate: text("inf"),
                    ..form("quick")
                },
                "learning_rate: \"inf\" is not a valid number",
            ),
            (
                NewRunForm {
                    guard_gpu_c: text("hot"),
                    ..form("quick")
                },
                "guard_gpu_c: \"hot\" is not a number (°C)",
            ),
            (
                NewRunForm {
                    fine_tune: text("qlora"),
                    bits: text("3"),
                    ..form("quick")
                },
                "bits: must be 4 or 8",
            ),
            (form("fast"), "preset: unknown preset \"fast\""),
        ];
        for (form, message) in cases {
            assert_eq!(form.train_config(None).unwrap_err(), message);
        }
    }

    #[test]
    fn an_unchanged_clone_is_the_same_config() {
        let mut original = TrainConfig {
            iters: 6,
            learning_rate: 2e-4,
            seed: 9,
            steps_per_report: 1,
            fine_tune_type: FineTuneType::Dora,
            early_stopping: Some(EarlyStopping {
                patience: 4,
                min_delta: 0.01,
            }),
            keep_checkpoints: Some(2),
            ..TrainConfig::default()
        };
        original.lora_parameters.scale = 10.0;
        original.lora_parameters.dropout = 0.05;
        original.thermal_guard.resume_below_c = 7.5;
        let form = NewRunForm::from_config(3, "original", "tiny".into(), "ahoy".into(), &original);
        assert_eq!(form.name.as_deref(), Some("original (copy)"));
        assert_eq!(form.fine_tune.as_deref(), Some("dora"));
        assert_eq!(form.train_config(Some(original.clone())).unwrap(), original);

        let qlora = TrainConfig {
            quantize: Some(QuantizeOnLoad {
                bits: 4,
                group_size: 32,
            }),
            ..TrainConfig::default()
        };
        let form = NewRunForm::from_config(4, "q", "tiny".into(), "ahoy".into(), &qlora);
        assert_eq!(form.fine_tune.as_deref(), Some("qlora"));
        assert_eq!(form.train_config(Some(qlora.clone())).unwrap(), qlora);
    }
}
