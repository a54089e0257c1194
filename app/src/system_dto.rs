//! The machine's figures, as the server's sampler reads them, `loralab
//! system` prints them, the System page shows them and runs store them.
//! A figure this machine cannot give is `None` (left out of the JSON),
//! never zero.

use serde::{Deserialize, Serialize};

/// One reading of the machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemSample {
    /// When it was read, in seconds since the Unix epoch.
    pub time: f64,
    /// The hottest CPU sensor (hwmon's CPU chips, else CPU thermal zones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_temp_c: Option<f64>,
    /// Busy share of every core since the previous reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_util_percent: Option<f64>,
    /// Mean current frequency over the cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_freq_mhz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_available_bytes: Option<u64>,
    /// Total less available (what programs hold, not counting caches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_used_bytes: Option<u64>,
    /// PSI: share of the last 10 s in which some task waited for memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure_some_percent: Option<f64>,
    /// PSI: share of the last 10 s in which every task waited for memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure_full_percent: Option<f64>,
    /// Resident memory of the run's worker process (per-run samples only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_rss_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuSample>,
    /// Every temperature sensor read (the System page lists them; per-run
    /// samples leave them out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensors: Vec<TemperatureSensor>,
}

/// One NVIDIA GPU, through NVML.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub util_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_c: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_limit_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphics_clock_mhz: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_clock_mhz: Option<u32>,
    /// NVML's clock throttle reasons in force (e.g. `SW_THERMAL_SLOWDOWN`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle_reasons: Vec<String>,
}

/// A temperature sensor that was found and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemperatureSensor {
    /// `hwmon`, `thermal_zone` or `nvml`.
    pub source: String,
    /// The chip (`coretemp`), zone type (`x86_pkg_temp`) or GPU name.
    pub name: String,
    /// The sensor's own label (`Package id 0`), or its file.
    pub label: String,
    pub celsius: f64,
    /// Counted as a CPU temperature.
    pub cpu: bool,
}

impl SystemSample {
    /// The hottest GPU.
    pub fn gpu_temp_c(&self) -> Option<f64> {
        self.gpus
            .iter()
            .filter_map(|gpu| gpu.temp_c)
            .reduce(f64::max)
    }

    /// Whether any temperature can be read here.
    pub fn has_temperature(&self) -> bool {
        self.cpu_temp_c.is_some() || self.gpu_temp_c().is_some()
    }

    /// Swap in use as a share of the swap there is.
    pub fn swap_used_percent(&self) -> Option<f64> {
        match (self.swap_used_bytes, self.swap_total_bytes) {
            (Some(used), Some(total)) if total > 0 => Some(used as f64 * 100.0 / total as f64),
            _ => None,
        }
    }

    /// Memory in use as a share of all memory.
    pub fn memory_used_percent(&self) -> Option<f64> {
        match (self.memory_used_bytes, self.memory_total_bytes) {
            (Some(used), Some(total)) if total > 0 => Some(used as f64 * 100.0 / total as f64),
            _ => None,
        }
    }
}

/// What the System page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemView {
    pub sample: SystemSample,
    /// The device MLX computes on.
    pub device: String,
    /// The sampler's root (`/`, or a fixture tree in tests).
    pub root: String,
    /// What a run's guard would do here with the default thresholds.
    pub guard: String,
}

/// A run's machine figures while it trained, and its guard's pauses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSystem {
    /// (step, sample), oldest first.
    pub samples: Vec<(u64, SystemSample)>,
    pub pauses: Vec<GuardPause>,
    /// The pause in force, when the run holds now (`seconds`: so far).
    pub paused: Option<GuardPause>,
    /// What the run's guard does: its thresholds, or why it is inactive.
    pub guard: String,
    /// The machine now: an active run's chart has a line for each figure
    /// it has, for the live samples to extend.
    pub now: SystemSample,
}

/// One pause of a run by its guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardPause {
    pub step: u64,
    /// e.g. "CPU 97 °C".
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub since: f64,
    /// Seconds paused, once it resumed.
    pub seconds: Option<f64>,
}
