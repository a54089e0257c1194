//! Learning-rate schedules as mlx-lm builds them from `lr_schedule`: the
//! named MLX schedule, optionally preceded by a linear warmup joined at
//! `warmup + 1` (so the peak value holds for two steps, as in mlx-lm).
//! `step` is the optimizer's update count before the update.

use anyhow::{bail, Result};

use crate::config::{LrSchedule, TrainConfig};

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Constant(f64),
    /// `arguments: [init, decay_steps, end]`
    CosineDecay {
        init: f64,
        decay_steps: f64,
        end: f64,
    },
    /// `arguments: [init, end, steps]`
    Linear {
        init: f64,
        end: f64,
        steps: f64,
    },
    /// `arguments: [init, decay_rate]`
    ExponentialDecay {
        init: f64,
        rate: f64,
    },
    /// `arguments: [init, decay_rate, step_size]`
    StepDecay {
        init: f64,
        rate: f64,
        step_size: f64,
    },
    Warmup {
        warmup: Box<Schedule>,
        steps: usize,
        main: Box<Schedule>,
    },
}

impl Schedule {
    pub fn from_config(cfg: &TrainConfig) -> Result<Self> {
        match &cfg.lr_schedule {
            None => {
                if !(cfg.learning_rate.is_finite() && cfg.learning_rate >= 0.0) {
                    bail!(
                        "learning_rate must be a non-negative number, got {}",
                        cfg.learning_rate
                    );
                }
                Ok(Schedule::Constant(cfg.learning_rate))
            }
            Some(s) => Self::from_lr_schedule(s),
        }
    }

    pub fn from_lr_schedule(s: &LrSchedule) -> Result<Self> {
        let args = &s.arguments;
        let need = |n: usize, names: &str| -> Result<()> {
            if args.len() < n {
                bail!(
                    "lr_schedule `{}` needs arguments [{names}], got {} value(s)",
                    s.name,
                    args.len()
                );
            }
            Ok(())
        };
        let main = match s.name.as_str() {
            "cosine_decay" => {
                need(2, "init, decay_steps, end")?;
                if args[1] < 1.0 {
                    bail!("lr_schedule `cosine_decay`: decay_steps must be at least 1, got {}", args[1]);
                }
                Schedule::CosineDecay {
                    init: args[0],
                    decay_steps: args[1],
                    end: args.get(2).copied().unwrap_or(0.0),
                }
            }
            "linear_schedule" => {
                need(3, "init, end, steps")?;
                if args[2] < 1.0 {
                    bail!("lr_schedule `linear_schedule`: steps must be at least 1, got {}", args[2]);
                }
                Schedule::Linear {
                    init: args[0],
                    end: args[1],
                    steps: args[2],
                }
            }
            "exponential_decay" => {
                need(2, "init, decay_rate")?;
                Schedule::ExponentialDecay {
                    init: args[0],
                    rate: args[1],
                }
            }
            "step_decay" => {
                need(3, "init, decay_rate, step_size")?;
                if args[2] < 1.0 {
                    bail!("lr_schedule `step_decay`: step_size must be at least 1, got {}", args[2]);
                }
                Schedule::StepDecay {
                    init: args[0],
                    rate: args[1],
                    step_size: args[2],
                }
            }
            other => bail!(
                "lr_schedule name `{other}` is not supported (cosine_decay, linear_schedule, exponential_decay, step_decay)"
            ),
        };
        if s.warmup == 0 {
            return Ok(main);
        }
        Ok(Schedule::Warmup {
            warmup: Box::new(Schedule::Linear {
                init: s.warmup_init,
                end: args[0],
                steps: s.warmup as f64,
            }),
            steps: s.warmup,
            main: Box::new(main),
        })
    }

    /// The learning rate of the update that follows `step` earlier updates.
    /// Computed in f32 the way MLX evaluates its schedule arrays (Python
    /// scalars folded in double precision first), so values agree to f32 rounding.
    pub fn at(&self, step: usize) -> f64 {
        let s = step as f32;
        let value: f32 = match self {
            Schedule::Constant(lr) => *lr as f32,
            Schedule::CosineDecay {
                init,
                decay_steps,
                end,
            } => {
                let s = s.min(*decay_steps as f32);
                let decay = 0.5 * (1.0 + ((std::f64::consts::PI / decay_steps) as f32 * s).cos());
                *end as f32 + decay * (init - end) as f32
            }
            Schedule::Linear { init, end, steps } => {
                s.min(*steps as f32) * ((end - init) / steps) as f32 + *init as f32
            }
            Schedule::ExponentialDecay { init, rate } => *init as f32 * (*rate as f32).powf(s),
            Schedule::StepDecay {
                init,
                rate,
                step_size,
            } => *init as f32 * (*rate as f32).powf((step / *step_size as usize) as f32),
            Schedule::Warmup {
                warmup,
                steps,
                main,
            } => {
                return if step < steps + 1 {
                    warmup.at(step)
                } else {
                    main.at(step - steps - 1)
                };
            }
        };
        f64::from(value)
    }
}
