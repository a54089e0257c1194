//! The thermal and memory guard of a run: whether a reading makes a
//! training pause, and whether a paused one may resume. Temperatures
//! resume `resume_below_c` under their threshold; swap 10 points under its
//! threshold; memory pressure under half of its threshold.

use app::system_dto::SystemSample;
use engine::guard_config::GuardConfig;

/// Swap use must fall this many points under its threshold to resume.
const SWAP_HYSTERESIS_PERCENT: f64 = 10.0;

/// Why `sample` pauses a run guarded by `config` ("CPU 97 °C"), if it does.
pub fn pause_reason(config: &GuardConfig, sample: &SystemSample) -> Option<String> {
    if !config.enabled {
        return None;
    }
    if let Some(cpu) = sample.cpu_temp_c.filter(|&c| c >= config.cpu_pause_c) {
        return Some(format!("CPU {cpu:.0} °C"));
    }
    if let Some(gpu) = sample.gpu_temp_c().filter(|&c| c >= config.gpu_pause_c) {
        return Some(format!("GPU {gpu:.0} °C"));
    }
    if config.swap_pause_percent > 0.0 {
        if let Some(swap) = sample
            .swap_used_percent()
            .filter(|&s| s >= config.swap_pause_percent)
        {
            return Some(format!("swap {swap:.0} % used"));
        }
    }
    if config.memory_pressure_pause_percent > 0.0 {
        if let Some(pressure) = sample
            .memory_pressure_some_percent
            .filter(|&p| p >= config.memory_pressure_pause_percent)
        {
            return Some(format!("memory pressure {pressure:.0} %"));
        }
    }
    None
}

/// Whether a run paused by its guard may go on: every figure is back under
/// its threshold less the hysteresis (a figure the machine lost counts as
/// fine, or a run would hold forever).
pub fn may_resume(config: &GuardConfig, sample: &SystemSample) -> bool {
    let under = |value: Option<f64>, limit: f64| value.is_none_or(|value| value < limit);
    under(
        sample.cpu_temp_c,
        config.cpu_pause_c - config.resume_below_c,
    ) && under(
        sample.gpu_temp_c(),
        config.gpu_pause_c - config.resume_below_c,
    ) && (config.swap_pause_percent == 0.0
        || under(
            sample.swap_used_percent(),
            config.swap_pause_percent - SWAP_HYSTERESIS_PERCENT,
        ))
        && (config.memory_pressure_pause_percent == 0.0
            || under(
                sample.memory_pressure_some_percent,
                config.memory_pressure_pause_percent / 2.0,
            ))
}

/// What the guard does on this machine, for the run and System pages.
pub fn describe(config: &GuardConfig, sample: &SystemSample) -> String {
    if !config.enabled {
        return "Guard off for this run.".into();
    }
    let mut parts = Vec::new();
    if sample.has_temperature() {
        let mut chips = Vec::new();
        if sample.cpu_temp_c.is_some() {
            chips.push(format!("{:.0} °C CPU", config.cpu_pause_c));
        }
        if sample.gpu_temp_c().is_some() {
            chips.push(format!("{:.0} °C GPU", config.gpu_pause_c));
        }
        parts.push(format!(
            "Thermal guard on: pauses above {}, resumes {:.0} °C below.",
            chips.join(" / "),
            config.resume_below_c
        ));
    } else {
        parts.push("Thermal guard inactive: no temperature sensor found.".into());
    }
    let mut memory = Vec::new();
    if config.swap_pause_percent > 0.0 && sample.swap_used_percent().is_some() {
        memory.push(format!("{:.0} % of swap used", config.swap_pause_percent));
    }
    if config.memory_pressure_pause_percent > 0.0 && sample.memory_pressure_some_percent.is_some() {
        memory.push(format!(
            "{:.0} % memory pressure",
            config.memory_pressure_pause_percent
        ));
    }
    if memory.is_empty() {
        parts.push("Memory guard inactive: no swap or memory pressure figures.".into());
    } else {
        parts.push(format!(
            "Memory guard on: pauses at {}.",
            memory.join(" or ")
        ));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(cpu: Option<f64>) -> SystemSample {
        SystemSample {
            cpu_temp_c: cpu,
            ..SystemSample::default()
        }
    }

    #[test]
    fn pauses_at_the_threshold_and_resumes_below_the_hysteresis() {
        let config = GuardConfig::default();
        assert_eq!(pause_reason(&config, &hot(Some(94.9))), None);
        assert_eq!(
            pause_reason(&config, &hot(Some(97.2))).as_deref(),
            Some("CPU 97 °C")
        );
        assert!(!may_resume(&config, &hot(Some(90.0))));
        assert!(!may_resume(&config, &hot(Some(85.0))));
        assert!(may_resume(&config, &hot(Some(84.9))));
        let off = GuardConfig {
            enabled: false,
            ..GuardConfig::default()
        };
        assert_eq!(pause_reason(&off, &hot(Some(120.0))), None);
    }

    #[test]
    fn gpu_swap_and_pressure_pause_too() {
        let config = GuardConfig::default();
        let mut sample = SystemSample {
            gpus: vec![app::system_dto::GpuSample {
                temp_c: Some(86.0),
                ..Default::default()
            }],
            swap_total_bytes: Some(100),
            swap_used_bytes: Some(95),
            memory_pressure_some_percent: Some(50.0),
            ..SystemSample::default()
        };
        assert_eq!(pause_reason(&config, &sample).as_deref(), Some("GPU 86 °C"));
        sample.gpus.clear();
        assert_eq!(
            pause_reason(&config, &sample).as_deref(),
            Some("swap 95 % used")
        );
        sample.swap_used_bytes = Some(85);
        assert_eq!(
            pause_reason(&config, &sample).as_deref(),
            Some("memory pressure 50 %")
        );
        assert!(!may_resume(&config, &sample), "swap 85 % is not under 80 %");
        sample.swap_used_bytes = Some(10);
        sample.memory_pressure_some_percent = Some(19.0);
        assert!(may_resume(&config, &sample));
    }

    #[test]
    fn says_when_it_is_inactive() {
        let config = GuardConfig::default();
        assert_eq!(
            describe(&config, &SystemSample::default()),
            "Thermal guard inactive: no temperature sensor found. \
             Memory guard inactive: no swap or memory pressure figures."
        );
        assert_eq!(
            describe(&config, &hot(Some(50.0))),
            "Thermal guard on: pauses above 95 °C CPU, resumes 10 °C below. \
             Memory guard inactive: no swap or memory pressure figures."
        );
    }
}
