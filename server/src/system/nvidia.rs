//! NVIDIA GPUs through NVML (`nvml-wrapper`), which loads
//! `libnvidia-ml.so.1` when the sampler starts: a machine without the
//! driver has no NVML and no GPU figures. A query a GPU does not support
//! (power on some boards) leaves that figure out.

use app::system_dto::{GpuSample, TemperatureSensor};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor as NvmlSensor};
use nvml_wrapper::Nvml;

pub struct NvidiaReader {
    nvml: Nvml,
}

impl NvidiaReader {
    /// NVML when the driver's library loads and initialises, else `None`
    /// (the reason goes to the log once).
    pub fn open() -> Option<Self> {
        match Nvml::init() {
            Ok(nvml) => Some(Self { nvml }),
            Err(error) => {
                tracing::info!(%error, "no NVML: no NVIDIA GPU figures");
                None
            }
        }
    }

    pub fn read(&self, sensors: &mut Vec<TemperatureSensor>) -> Vec<GpuSample> {
        let count = self.nvml.device_count().unwrap_or(0);
        let mut gpus = Vec::new();
        for index in 0..count {
            let Ok(device) = self.nvml.device_by_index(index) else {
                continue;
            };
            let memory = device.memory_info().ok();
            let gpu = GpuSample {
                index,
                name: device.name().ok(),
                util_percent: device.utilization_rates().ok().map(|u| f64::from(u.gpu)),
                memory_used_bytes: memory.as_ref().map(|m| m.used),
                memory_total_bytes: memory.as_ref().map(|m| m.total),
                temp_c: device.temperature(NvmlSensor::Gpu).ok().map(f64::from),
                power_w: device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                power_limit_w: device
                    .enforced_power_limit()
                    .ok()
                    .map(|mw| f64::from(mw) / 1000.0),
                graphics_clock_mhz: device.clock_info(Clock::Graphics).ok(),
                memory_clock_mhz: device.clock_info(Clock::Memory).ok(),
                throttle_reasons: device
                    .current_throttle_reasons()
                    .map(|reasons| {
                        reasons
                            .iter_names()
                            .map(|(name, _)| name.to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            if let Some(celsius) = gpu.temp_c {
                sensors.push(TemperatureSensor {
                    source: "nvml".into(),
                    name: gpu.name.clone().unwrap_or_else(|| format!("GPU {index}")),
                    label: format!("GPU {index}"),
                    celsius,
                    cpu: false,
                });
            }
            gpus.push(gpu);
        }
        gpus
    }
}
