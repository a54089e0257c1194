//! `thermal_guard` in a run's config: when the server pauses a training
//! (checkpoint, then hold) for heat or memory, and when it resumes it. The
//! guard runs in the server, which samples the machine; the trainer only
//! sees a stop and a resume.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// On by default; a machine without sensors leaves it inactive.
    pub enabled: bool,
    /// Pause when the hottest CPU sensor reaches this.
    pub cpu_pause_c: f64,
    /// Pause when the hottest GPU reaches this.
    pub gpu_pause_c: f64,
    /// Hysteresis: resume once every temperature is this far below its
    /// pause threshold (so a chip hovering at the threshold does not make
    /// the run flap).
    pub resume_below_c: f64,
    /// Pause when this share of swap is in use (0 turns this check off).
    pub swap_pause_percent: f64,
    /// Pause when PSI memory pressure ("some", last 10 s) reaches this
    /// share (0 turns this check off). Resume below half of it.
    pub memory_pressure_pause_percent: f64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cpu_pause_c: 95.0,
            gpu_pause_c: 85.0,
            resume_below_c: 10.0,
            swap_pause_percent: 90.0,
            memory_pressure_pause_percent: 40.0,
        }
    }
}

impl GuardConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fields = [
            ("thermal_guard.cpu_pause_c", self.cpu_pause_c),
            ("thermal_guard.gpu_pause_c", self.gpu_pause_c),
        ];
        for (field, value) in fields {
            if !(value.is_finite() && (30.0..=150.0).contains(&value)) {
                return Err(ConfigError {
                    field,
                    reason: format!("must be from 30 to 150 (°C), got {value}"),
                });
            }
        }
        if !(self.resume_below_c.is_finite() && self.resume_below_c > 0.0)
            || self.resume_below_c >= 30.0
        {
            return Err(ConfigError {
                field: "thermal_guard.resume_below_c",
                reason: format!(
                    "must be above 0 and below 30 (°C), got {}",
                    self.resume_below_c
                ),
            });
        }
        for (field, value) in [
            ("thermal_guard.swap_pause_percent", self.swap_pause_percent),
            (
                "thermal_guard.memory_pressure_pause_percent",
                self.memory_pressure_pause_percent,
            ),
        ] {
            if !(value.is_finite() && (0.0..=100.0).contains(&value)) {
                return Err(ConfigError {
                    field,
                    reason: format!("must be from 0 (off) to 100 (%), got {value}"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_field() {
        assert_eq!(GuardConfig::default().validate(), Ok(()));
        let hot = GuardConfig {
            cpu_pause_c: 200.0,
            ..GuardConfig::default()
        };
        assert_eq!(
            hot.validate().unwrap_err().field,
            "thermal_guard.cpu_pause_c"
        );
        let flat = GuardConfig {
            resume_below_c: 0.0,
            ..GuardConfig::default()
        };
        assert_eq!(
            flat.validate().unwrap_err().field,
            "thermal_guard.resume_below_c"
        );
        let swap = GuardConfig {
            swap_pause_percent: f64::NAN,
            ..GuardConfig::default()
        };
        assert_eq!(
            swap.validate().unwrap_err().field,
            "thermal_guard.swap_pause_percent"
        );
    }
}
