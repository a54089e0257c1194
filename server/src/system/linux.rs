//! Linux figures from sysfs and procfs, read under a root folder (`/` on a
//! real machine; tests write a fixture tree with the same layout). Every
//! reader answers `None` or nothing for a file that is missing or does not
//! parse: a machine without a sensor has no figure, not a zero.

use std::path::{Path, PathBuf};

use app::system_dto::{SystemSample, TemperatureSensor};

/// hwmon chips whose temperatures are the CPU's.
const CPU_CHIPS: &[&str] = &[
    "coretemp",
    "k10temp",
    "k8temp",
    "zenpower",
    "cpu_thermal",
    "cpu-thermal",
    "soc_thermal",
    "x86_pkg_temp",
];

/// CPU time counters of `/proc/stat`'s first line: (busy, total) jiffies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
}

pub struct LinuxReader {
    root: PathBuf,
    previous_cpu: Option<CpuTimes>,
}

impl LinuxReader {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            previous_cpu: None,
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Fills the Linux figures of `sample`.
    pub fn read(&mut self, sample: &mut SystemSample) {
        let mut sensors = hwmon_sensors(&self.path("sys/class/hwmon"));
        let hwmon_has_cpu = sensors.iter().any(|sensor| sensor.cpu);
        let zones = thermal_zones(&self.path("sys/class/thermal"));
        // A CPU zone counts only where hwmon has no CPU chip: both usually
        // report the same package sensor.
        sensors.extend(zones.into_iter().map(|mut zone| {
            zone.cpu &= !hwmon_has_cpu;
            zone
        }));
        sample.cpu_temp_c = sensors
            .iter()
            .filter(|sensor| sensor.cpu)
            .map(|sensor| sensor.celsius)
            .reduce(f64::max);
        sample.sensors = sensors;

        let cpu = read(&self.path("proc/stat")).and_then(|text| cpu_times(&text));
        sample.cpu_util_percent = match (self.previous_cpu, cpu) {
            (Some(before), Some(now)) if now.total > before.total => Some(
                (now.busy.saturating_sub(before.busy)) as f64 * 100.0
                    / (now.total - before.total) as f64,
            ),
            _ => None,
        };
        if cpu.is_some() {
            self.previous_cpu = cpu;
        }
        sample.cpu_freq_mhz = cpu_freq_mhz(&self.root);

        if let Some(text) = read(&self.path("proc/meminfo")) {
            let field = |name: &str| meminfo_bytes(&text, name);
            sample.memory_total_bytes = field("MemTotal");
            sample.memory_available_bytes = field("MemAvailable");
            sample.memory_used_bytes = sample
                .memory_total_bytes
                .zip(sample.memory_available_bytes)
                .map(|(total, available)| total.saturating_sub(available));
            sample.swap_total_bytes = field("SwapTotal");
            sample.swap_used_bytes = sample
                .swap_total_bytes
                .zip(field("SwapFree"))
                .map(|(total, free)| total.saturating_sub(free));
        }
        if let Some(text) = read(&self.path("proc/pressure/memory")) {
            sample.memory_pressure_some_percent = pressure_avg10(&text, "some");
            sample.memory_pressure_full_percent = pressure_avg10(&text, "full");
        }
    }
}

/// Resident memory of process `pid` (`VmRSS` of its status file).
pub fn process_rss(root: &Path, pid: u32) -> Option<u64> {
    let text = read(&root.join(format!("proc/{pid}/status")))?;
    meminfo_bytes(&text, "VmRSS")
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Entries of a folder, sorted by name, so sensors keep their order.
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    paths.sort();
    paths
}

/// A sysfs temperature (millidegrees Celsius) as degrees; absurd readings
/// (a disconnected probe reads -128 °C or 255 °C) are no reading.
fn millidegrees(path: &Path) -> Option<f64> {
    let celsius = read(path)?.trim().parse::<i64>().ok()? as f64 / 1000.0;
    (-40.0..=200.0).contains(&celsius).then_some(celsius)
}

fn hwmon_sensors(class: &Path) -> Vec<TemperatureSensor> {
    let mut sensors = Vec::new();
    for chip in sorted_entries(class) {
        let Some(name) = read(&chip.join("name")).map(|name| name.trim().to_string()) else {
            continue;
        };
        let cpu = CPU_CHIPS.contains(&name.as_str());
        for input in sorted_entries(&chip) {
            let Some(file) = input.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            let Some(prefix) = file
                .strip_suffix("_input")
                .filter(|prefix| prefix.starts_with("temp"))
            else {
                continue;
            };
            let Some(celsius) = millidegrees(&input) else {
                continue;
            };
            let label = read(&chip.join(format!("{prefix}_label")))
                .map(|label| label.trim().to_string())
                .unwrap_or_else(|| prefix.to_string());
            sensors.push(TemperatureSensor {
                source: "hwmon".into(),
                name: name.clone(),
                label,
                celsius,
                cpu,
            });
        }
    }
    sensors
}

fn thermal_zones(class: &Path) -> Vec<TemperatureSensor> {
    let mut zones = Vec::new();
    for zone in sorted_entries(class) {
        let Some(dir) = zone.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if !dir.starts_with("thermal_zone") {
            continue;
        }
        let (Some(kind), Some(celsius)) =
            (read(&zone.join("type")), millidegrees(&zone.join("temp")))
        else {
            continue;
        };
        let kind = kind.trim().to_string();
        let lower = kind.to_lowercase();
        zones.push(TemperatureSensor {
            source: "thermal_zone".into(),
            cpu: lower.contains("cpu") || lower.contains("pkg") || lower.contains("soc"),
            name: kind,
            label: dir.to_string(),
            celsius,
        });
    }
    zones
}

/// (busy, total) from `/proc/stat`'s aggregate `cpu` line; idle and iowait
/// are not busy.
fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|value| value.parse().ok())
        .collect::<Option<_>>()?;
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal; guest time is
    // already inside user and nice.
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

/// Mean of the cores' `scaling_cur_freq` (kHz), else of `/proc/cpuinfo`'s
/// `cpu MHz` lines.
fn cpu_freq_mhz(root: &Path) -> Option<f64> {
    let mut khz = Vec::new();
    for cpu in sorted_entries(&root.join("sys/devices/system/cpu")) {
        let is_core = cpu
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|name| name.strip_prefix("cpu"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_core {
            continue;
        }
        if let Some(value) = read(&cpu.join("cpufreq/scaling_cur_freq"))
            .and_then(|text| text.trim().parse::<f64>().ok())
        {
            khz.push(value);
        }
    }
    if !khz.is_empty() {
        return Some(khz.iter().sum::<f64>() / khz.len() as f64 / 1000.0);
    }
    let cpuinfo = read(&root.join("proc/cpuinfo"))?;
    let mhz: Vec<f64> = cpuinfo
        .lines()
        .filter(|line| line.starts_with("cpu MHz"))
        .filter_map(|line| line.split(':').nth(1)?.trim().parse().ok())
        .collect();
    (!mhz.is_empty()).then(|| mhz.iter().sum::<f64>() / mhz.len() as f64)
}

/// A `Name:   123 kB` line of meminfo (or a process's status) in bytes.
fn meminfo_bytes(text: &str, name: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|line| line.split(':').next() == Some(name))?;
    let mut words = line.split(':').nth(1)?.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// `avg10` of the `some` or `full` line of a PSI file, in percent.
fn pressure_avg10(text: &str, which: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|line| line.split_whitespace().next() == Some(which))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("avg10="))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_a_fixture_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "sys/class/hwmon/hwmon0/name", "nvme\n");
        write(r, "sys/class/hwmon/hwmon0/temp1_input", "41850\n");
        write(r, "sys/class/hwmon/hwmon1/name", "coretemp\n");
        write(r, "sys/class/hwmon/hwmon1/temp1_input", "72000\n");
        write(r, "sys/class/hwmon/hwmon1/temp1_label", "Package id 0\n");
        write(r, "sys/class/hwmon/hwmon1/temp2_input", "75500\n");
        // A disconnected probe.
        write(r, "sys/class/hwmon/hwmon1/temp3_input", "-128000\n");
        write(r, "sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
        write(r, "sys/class/thermal/thermal_zone0/temp", "99000\n");
        write(
            r,
            "proc/stat",
            "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n",
        );
        write(
            r,
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq",
            "2000000\n",
        );
        write(
            r,
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq",
            "3000000\n",
        );
        write(
            r,
            "proc/meminfo",
            "MemTotal:       16000 kB\nMemFree: 1 kB\nMemAvailable:    4000 kB\nSwapTotal: 1000 kB\nSwapFree: 250 kB\n",
        );
        write(
            r,
            "proc/pressure/memory",
            "some avg10=12.50 avg60=1.00 avg300=0.10 total=5\nfull avg10=3.25 avg60=0.00 avg300=0.00 total=1\n",
        );
        write(r, "proc/77/status", "Name: loralab\nVmRSS:\t  2048 kB\n");

        let mut reader = LinuxReader::new(r.to_path_buf());
        let mut sample = SystemSample::default();
        reader.read(&mut sample);
        // The package zone duplicates coretemp, which wins.
        assert_eq!(sample.cpu_temp_c, Some(75.5));
        let labels: Vec<(&str, &str, f64, bool)> = sample
            .sensors
            .iter()
            .map(|s| (s.name.as_str(), s.label.as_str(), s.celsius, s.cpu))
            .collect();
        assert_eq!(
            labels,
            [
                ("nvme", "temp1", 41.85, false),
                ("coretemp", "Package id 0", 72.0, true),
                ("coretemp", "temp2", 75.5, true),
                ("x86_pkg_temp", "thermal_zone0", 99.0, false),
            ]
        );
        assert_eq!(sample.cpu_util_percent, None, "no earlier reading");
        assert_eq!(sample.cpu_freq_mhz, Some(2500.0));
        assert_eq!(sample.memory_total_bytes, Some(16000 * 1024));
        assert_eq!(sample.memory_used_bytes, Some(12000 * 1024));
        assert_eq!(sample.swap_used_bytes, Some(750 * 1024));
        assert_eq!(sample.swap_used_percent(), Some(75.0));
        assert_eq!(sample.memory_pressure_some_percent, Some(12.5));
        assert_eq!(sample.memory_pressure_full_percent, Some(3.25));
        assert_eq!(process_rss(r, 77), Some(2048 * 1024));
        assert_eq!(process_rss(r, 78), None);

        // 150 more busy jiffies out of 200.
        write(r, "proc/stat", "cpu  200 0 150 850 0 0 0 0 0 0\n");
        reader.read(&mut sample);
        assert_eq!(sample.cpu_util_percent, Some(75.0));
    }

    #[test]
    fn a_zone_counts_for_the_cpu_without_hwmon() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "sys/class/thermal/thermal_zone3/type",
            "cpu-thermal\n",
        );
        write(
            root.path(),
            "sys/class/thermal/thermal_zone3/temp",
            "64500\n",
        );
        let mut sample = SystemSample::default();
        LinuxReader::new(root.path().to_path_buf()).read(&mut sample);
        assert_eq!(sample.cpu_temp_c, Some(64.5));
    }

    #[test]
    fn an_empty_root_has_no_figures() {
        let root = tempfile::tempdir().unwrap();
        let mut sample = SystemSample::default();
        LinuxReader::new(root.path().to_path_buf()).read(&mut sample);
        assert_eq!(sample, SystemSample::default());
    }
}
