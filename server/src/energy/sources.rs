//! Where power readings come from: NVIDIA's NVML, Linux RAPL powercap counters, or an
//! estimate from the process's CPU time. Each source reports cumulative joules.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which kind of reading a figure is, reported in the `source` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerSource {
    Nvml,
    Rapl,
    Estimate,
}

impl PowerSource {
    pub fn label(self) -> &'static str {
        match self {
            PowerSource::Nvml => "nvml",
            PowerSource::Rapl => "rapl",
            PowerSource::Estimate => "estimate",
        }
    }
}

/// One reading: energy used since the probe started, and GPU figures where known.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    pub joules: f64,
    pub gpu_utilization: Option<f64>,
    pub gpu_memory_used_bytes: Option<u64>,
}

/// Why a power source cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: unexpected format")]
    Format(PathBuf),
    #[error("no RAPL package domain under {0}")]
    NoRapl(PathBuf),
    #[error("NVML: {0}")]
    Nvml(String),
    #[error("the power source is unavailable: {0}")]
    Unavailable(String),
}

/// A source of energy readings.
pub trait PowerProbe: Send {
    fn source(&self) -> PowerSource;
    /// Energy since the probe was created, in joules.
    fn read(&mut self) -> Result<Reading, PowerError>;
}

/// Sums RAPL package counters (`/sys/class/powercap/intel-rapl:N/energy_uj`), handling
/// wrap-around at `max_energy_range_uj`.
pub struct RaplProbe {
    domains: Vec<RaplDomain>,
    joules: f64,
}

struct RaplDomain {
    energy_file: PathBuf,
    range_uj: u64,
    last_uj: u64,
}

impl RaplProbe {
    /// The package domains under `root` (normally `/sys/class/powercap`), if readable.
    pub fn open(root: &Path) -> Result<Self, PowerError> {
        let entries = std::fs::read_dir(root).map_err(|source| PowerError::Read {
            path: root.to_path_buf(),
            source,
        })?;
        let mut domains = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Top-level package domains only ("intel-rapl:0"), not sub-domains ("intel-rapl:0:1").
            if !name.starts_with("intel-rapl:") || name.matches(':').count() != 1 {
                continue;
            }
            let dir = entry.path();
            let energy_file = dir.join("energy_uj");
            let last_uj = read_u64(&energy_file)?;
            let range_uj = read_u64(&dir.join("max_energy_range_uj"))?;
            domains.push(RaplDomain {
                energy_file,
                range_uj,
                last_uj,
            });
        }
        if domains.is_empty() {
            return Err(PowerError::NoRapl(root.to_path_buf()));
        }
        Ok(Self {
            domains,
            joules: 0.0,
        })
    }
}

impl PowerProbe for RaplProbe {
    fn source(&self) -> PowerSource {
        PowerSource::Rapl
    }

    fn read(&mut self) -> Result<Reading, PowerError> {
        for domain in &mut self.domains {
            let now = read_u64(&domain.energy_file)?;
            self.joules += counter_delta(domain.last_uj, now, domain.range_uj) as f64 / 1e6;
            domain.last_uj = now;
        }
        Ok(Reading {
            joules: self.joules,
            ..Reading::default()
        })
    }
}

/// Increase of a counter that wraps to 0 after `range`.
pub fn counter_delta(previous: u64, now: u64, range: u64) -> u64 {
    if now >= previous {
        now - previous
    } else {
        range.saturating_sub(previous) + now
    }
}

fn read_u64(path: &Path) -> Result<u64, PowerError> {
    read_text(path)?
        .trim()
        .parse()
        .map_err(|_| PowerError::Format(path.to_path_buf()))
}

fn read_text(path: &Path) -> Result<String, PowerError> {
    std::fs::read_to_string(path).map_err(|source| PowerError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Configured full-load watts × the share of the machine's CPU time this process used.
/// Clearly an estimate: no meter is read.
pub struct CpuTimeEstimate {
    watts_at_full_load: f64,
    cores: f64,
    stat_file: PathBuf,
    last_cpu_seconds: f64,
    last_at: Instant,
    joules: f64,
}

/// Linux reports process CPU time in clock ticks of 1/100 s on every mainstream build.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

impl CpuTimeEstimate {
    pub fn new(watts_at_full_load: f64, stat_file: PathBuf) -> Result<Self, PowerError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let last_cpu_seconds = process_cpu_seconds(&stat_file)?;
        Ok(Self {
            watts_at_full_load,
            cores,
            stat_file,
            last_cpu_seconds,
            last_at: Instant::now(),
            joules: 0.0,
        })
    }
}

impl PowerProbe for CpuTimeEstimate {
    fn source(&self) -> PowerSource {
        PowerSource::Estimate
    }

    fn read(&mut self) -> Result<Reading, PowerError> {
        let cpu = process_cpu_seconds(&self.stat_file)?;
        let now = Instant::now();
        let wall = now.duration_since(self.last_at).as_secs_f64();
        if wall > 0.0 {
            let utilisation = ((cpu - self.last_cpu_seconds) / (wall * self.cores)).clamp(0.0, 1.0);
            self.joules += self.watts_at_full_load * utilisation * wall;
        }
        self.last_cpu_seconds = cpu;
        self.last_at = now;
        Ok(Reading {
            joules: self.joules,
            ..Reading::default()
        })
    }
}

/// User + system CPU seconds from a `/proc/<pid>/stat` file.
pub fn process_cpu_seconds(stat_file: &Path) -> Result<f64, PowerError> {
    let text = read_text(stat_file)?;
    parse_cpu_seconds(&text).ok_or_else(|| PowerError::Format(stat_file.to_path_buf()))
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces; fields after its closing ')' are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall, 12th and 13th after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SECOND)
}

/// NVIDIA GPUs through NVML: the total-energy counter where the GPU has one, else power
/// integrated over time; also utilisation and memory.
#[cfg(feature = "nvml")]
pub struct NvmlProbe {
    nvml: nvml_wrapper::Nvml,
    devices: u32,
    start_mj: Option<u64>,
    integrated_joules: f64,
    last_at: Instant,
}

#[cfg(feature = "nvml")]
impl NvmlProbe {
    pub fn open() -> Result<Self, PowerError> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| PowerError::Nvml(e.to_string()))?;
        let devices = nvml
            .device_count()
            .map_err(|e| PowerError::Nvml(e.to_string()))?;
        if devices == 0 {
            return Err(PowerError::Nvml("no GPU".into()));
        }
        let mut probe = Self {
            nvml,
            devices,
            start_mj: None,
            integrated_joules: 0.0,
            last_at: Instant::now(),
        };
        probe.start_mj = probe.total_energy_mj();
        Ok(probe)
    }

    fn total_energy_mj(&self) -> Option<u64> {
        (0..self.devices)
            .map(|i| {
                self.nvml
                    .device_by_index(i)
                    .ok()?
                    .total_energy_consumption()
                    .ok()
            })
            .sum()
    }
}

#[cfg(feature = "nvml")]
impl PowerProbe for NvmlProbe {
    fn source(&self) -> PowerSource {
        PowerSource::Nvml
    }

    fn read(&mut self) -> Result<Reading, PowerError> {
        let mut watts = 0.0;
        let (mut utilization, mut memory) = (0.0, 0u64);
        for i in 0..self.devices {
            let device = self
                .nvml
                .device_by_index(i)
                .map_err(|e| PowerError::Nvml(e.to_string()))?;
            watts += f64::from(
                device
                    .power_usage()
                    .map_err(|e| PowerError::Nvml(e.to_string()))?,
            ) / 1000.0;
            if let Ok(rates) = device.utilization_rates() {
                utilization += f64::from(rates.gpu) / 100.0 / f64::from(self.devices);
            }
            if let Ok(info) = device.memory_info() {
                memory += info.used;
            }
        }
        let now = Instant::now();
        self.integrated_joules += watts * now.duration_since(self.last_at).as_secs_f64();
        self.last_at = now;
        let joules = match (self.start_mj, self.total_energy_mj()) {
            (Some(start), Some(total)) => total.saturating_sub(start) as f64 / 1000.0,
            _ => self.integrated_joules,
        };
        Ok(Reading {
            joules,
            gpu_utilization: Some(utilization),
            gpu_memory_used_bytes: Some(memory),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_wrap_around_their_range() {
        assert_eq!(counter_delta(100, 250, 1000), 150);
        assert_eq!(counter_delta(900, 50, 1000), 150);
    }

    #[test]
    fn cpu_seconds_come_from_utime_and_stime() {
        let stat = "1234 (kiln (serve)) S 1 1234 1234 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 3 0 100";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage"), None);
    }

    #[test]
    fn rapl_sums_packages_and_survives_wrap_around() {
        let root = tempfile::tempdir().unwrap();
        let write = |domain: &str, file: &str, value: u64| {
            let dir = root.path().join(domain);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), format!("{value}\n")).unwrap();
        };
        write("intel-rapl:0", "energy_uj", 999_000_000);
        write("intel-rapl:0", "max_energy_range_uj", 1_000_000_000);
        write("intel-rapl:1", "energy_uj", 0);
        write("intel-rapl:1", "max_energy_range_uj", 1_000_000_000);
        write("intel-rapl:0:0", "energy_uj", 5); // a sub-domain: ignored
        write("intel-rapl:0:0", "max_energy_range_uj", 10);
        let mut probe = RaplProbe::open(root.path()).unwrap();
        write("intel-rapl:0", "energy_uj", 1_000_000); // wrapped: +2 J
        write("intel-rapl:1", "energy_uj", 3_000_000); // +3 J
        let reading = probe.read().unwrap();
        assert!((reading.joules - 5.0).abs() < 1e-9, "{reading:?}");
    }

    #[test]
    fn the_estimate_never_exceeds_full_load() {
        let mut probe = CpuTimeEstimate::new(20.0, PathBuf::from("/proc/self/stat")).unwrap();
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let reading = probe.read().unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        assert!(
            reading.joules > 0.0 && reading.joules <= 20.0 * elapsed + 1e-9,
            "{reading:?}"
        );
    }
}
