//! The new-run presets: starting points for the training settings, chosen
//! for a small model on a laptop. The form's filled-in fields override them.

use loralab_types::config::{EarlyStopping, TrainConfig};

/// A preset's training settings, as `loralab train` config keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    pub key: &'static str,
    /// What the preset picker shows.
    pub label: &'static str,
    pub iters: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub rank: usize,
    pub num_layers: i64,
    pub max_seq_length: usize,
    pub steps_per_report: usize,
    pub steps_per_eval: usize,
    pub save_every: usize,
    pub val_batches: i64,
    /// Early stopping's patience in evaluations; 0: never stop early.
    pub patience: usize,
    pub min_delta: f64,
    /// Numbered checkpoints kept (the best, plus the latest); 0: all.
    pub keep_checkpoints: usize,
}

pub const PRESETS: [Preset; 3] = [
    Preset {
        key: "quick",
        label: "Quick test: 30 steps, to check everything works",
        iters: 30,
        batch_size: 2,
        learning_rate: 1e-4,
        rank: 8,
        num_layers: 8,
        max_seq_length: 512,
        steps_per_report: 5,
        steps_per_eval: 10,
        save_every: 10,
        val_batches: 5,
        patience: 0,
        min_delta: 0.0,
        keep_checkpoints: 0,
    },
    Preset {
        key: "balanced",
        label: "Balanced: 300 steps",
        iters: 300,
        batch_size: 4,
        learning_rate: 1e-4,
        rank: 8,
        num_layers: 16,
        max_seq_length: 1024,
        steps_per_report: 10,
        steps_per_eval: 50,
        save_every: 50,
        val_batches: 10,
        patience: 0,
        min_delta: 0.0,
        keep_checkpoints: 0,
    },
    Preset {
        key: "thorough",
        label: "Thorough: 1000 steps, rank 16, all layers",
        iters: 1000,
        batch_size: 4,
        learning_rate: 5e-5,
        rank: 16,
        num_layers: -1,
        max_seq_length: 2048,
        steps_per_report: 10,
        steps_per_eval: 100,
        save_every: 100,
        val_batches: 25,
        // Ten evaluations: stop after five without improvement, and keep
        // the three best of the ten checkpoints.
        patience: 5,
        min_delta: 0.0,
        keep_checkpoints: 3,
    },
];

/// The preset of that key, or `balanced` when none is given.
pub fn preset(key: Option<&str>) -> Option<&'static Preset> {
    let key = key.filter(|key| !key.is_empty()).unwrap_or("balanced");
    PRESETS.iter().find(|preset| preset.key == key)
}

impl Preset {
    /// Sets the preset's settings on `config`; every other key keeps its
    /// value (mlx-lm's default, for a fresh config). A run from a preset
    /// reports its test loss at the end.
    pub fn apply(&self, config: &mut TrainConfig) {
        config.iters = self.iters;
        config.batch_size = self.batch_size;
        config.learning_rate = self.learning_rate;
        config.lora_parameters.rank = self.rank;
        config.num_layers = self.num_layers;
        config.max_seq_length = self.max_seq_length;
        config.steps_per_report = self.steps_per_report;
        config.steps_per_eval = self.steps_per_eval;
        config.save_every = self.save_every;
        config.val_batches = self.val_batches;
        config.test = true;
        config.early_stopping = (self.patience > 0).then_some(EarlyStopping {
            patience: self.patience,
            min_delta: self.min_delta,
        });
        config.keep_checkpoints = (self.keep_checkpoints > 0).then_some(self.keep_checkpoints);
    }

    /// The form fields a preset fills, as (field name, value): what an
    /// empty field means, shown as its placeholder.
    pub fn field_values(&self) -> [(&'static str, String); 11] {
        [
            ("iters", self.iters.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("learning_rate", format!("{:e}", self.learning_rate)),
            ("rank", self.rank.to_string()),
            ("num_layers", self.num_layers.to_string()),
            ("max_seq_length", self.max_seq_length.to_string()),
            ("steps_per_eval", self.steps_per_eval.to_string()),
            ("save_every", self.save_every.to_string()),
            ("patience", self.patience.to_string()),
            ("min_delta", self.min_delta.to_string()),
            ("keep_checkpoints", self.keep_checkpoints.to_string()),
        ]
    }

    /// The value `field` takes from this preset, for its placeholder.
    pub fn value_of(&self, field: &str) -> String {
        self.field_values()
            .into_iter()
            .find(|(key, _)| *key == field)
            .map(|(_, value)| value)
            .unwrap_or_default()
    }
}
