//! The hardware monitor: a sampler thread in the server (never in a
//! worker: it needs no MLX) reads the machine once a second while a run
//! trains and every 10 s otherwise, and publishes the latest reading.
//! Drivers of runs store it as the run's series and their guard acts on it
//! (`guard.rs`); the System page and `loralab system` show it.

pub mod guard;
mod linux;
mod nvidia;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use app::system_dto::{GuardPause, RunSystem, SystemSample};
use tokio::sync::watch;

/// How often the sampler reads while a run trains, and otherwise.
pub const TRAINING_INTERVAL: Duration = Duration::from_secs(1);
pub const IDLE_INTERVAL: Duration = Duration::from_secs(10);

/// Where sysfs and procfs are read: `LORALAB_SYSTEM_ROOT`, else `/`.
pub fn root_from_env() -> PathBuf {
    std::env::var_os("LORALAB_SYSTEM_ROOT")
        .filter(|root| !root.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// Reads every source this machine has.
pub struct Sampler {
    linux: linux::LinuxReader,
    nvidia: Option<nvidia::NvidiaReader>,
}

impl Sampler {
    pub fn new(root: PathBuf) -> Self {
        Self {
            linux: linux::LinuxReader::new(root),
            nvidia: nvidia::NvidiaReader::open(),
        }
    }

    pub fn sample(&mut self) -> SystemSample {
        let mut sample = SystemSample {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            ..SystemSample::default()
        };
        self.linux.read(&mut sample);
        if let Some(nvidia) = &self.nvidia {
            sample.gpus = nvidia.read(&mut sample.sensors);
        }
        sample
    }
}

/// The sampler thread and its latest reading. Cheap to clone.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<MonitorInner>,
}

struct MonitorInner {
    root: PathBuf,
    latest: watch::Sender<Arc<SystemSample>>,
    /// Runs training now: the sampler reads every second while any does.
    training: AtomicUsize,
    /// Wakes the sampler from its idle wait when a run starts.
    wake: std::sync::Mutex<mpsc::Sender<()>>,
}

/// Held by a run's driver while it trains (see `Monitor::training`).
pub struct Training {
    monitor: Monitor,
}

impl Drop for Training {
    fn drop(&mut self) {
        self.monitor.inner.training.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Monitor {
    /// Takes a first reading, then starts the sampler thread.
    pub fn start(root: PathBuf) -> Self {
        let mut sampler = Sampler::new(root.clone());
        let (latest, _) = watch::channel(Arc::new(sampler.sample()));
        let (wake, woken) = mpsc::channel();
        let monitor = Self {
            inner: Arc::new(MonitorInner {
                root,
                latest,
                training: AtomicUsize::new(0),
                wake: std::sync::Mutex::new(wake),
            }),
        };
        let weak = Arc::downgrade(&monitor.inner);
        let spawned = std::thread::Builder::new()
            .name("system-sampler".into())
            .spawn(move || loop {
                let interval = match weak.upgrade() {
                    Some(inner) if inner.training.load(Ordering::SeqCst) > 0 => TRAINING_INTERVAL,
                    Some(_) => IDLE_INTERVAL,
                    None => return,
                };
                match woken.recv_timeout(interval) {
                    Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                inner.latest.send_replace(Arc::new(sampler.sample()));
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the system sampler; figures stay as first read");
        }
        monitor
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn latest(&self) -> Arc<SystemSample> {
        self.inner.latest.borrow().clone()
    }

    /// Every new reading.
    pub fn subscribe(&self) -> watch::Receiver<Arc<SystemSample>> {
        self.inner.latest.subscribe()
    }

    /// Marks a run as training (readings every second) until the returned
    /// value is dropped.
    pub fn training(&self) -> Training {
        self.inner.training.fetch_add(1, Ordering::SeqCst);
        let wake = self.inner.wake.lock().unwrap_or_else(|e| e.into_inner());
        let _ = wake.send(());
        Training {
            monitor: self.clone(),
        }
    }

    /// Resident memory of process `pid`, when this machine tells.
    pub fn process_rss(&self, pid: u32) -> Option<u64> {
        linux::process_rss(&self.inner.root, pid)
    }
}

/// Reads a `system`, `paused` or `resumed` event of a run into `system`;
/// false for any other event.
pub fn read_run_event(system: &mut RunSystem, stored: &crate::store::StoredEvent) -> bool {
    let step = u64::try_from(stored.step.unwrap_or(0)).unwrap_or(0);
    let body = || serde_json::from_str::<serde_json::Value>(&stored.body).unwrap_or_default();
    match stored.kind.as_str() {
        "system" => {
            if let Ok(sample) = serde_json::from_str::<SystemSample>(&stored.body) {
                system.samples.push((step, sample));
            }
        }
        "paused" => {
            let body = body();
            system.pauses.push(GuardPause {
                step,
                reason: body["reason"].as_str().unwrap_or_default().to_string(),
                since: body["time"].as_f64().unwrap_or_default(),
                seconds: None,
            });
        }
        "resumed" => {
            if let Some(pause) = system.pauses.last_mut() {
                pause.seconds = body()["paused_seconds"].as_f64();
            }
        }
        _ => return false,
    }
    true
}

/// `loralab system`: two readings half a second apart (CPU utilisation is
/// a difference), the second printed as JSON.
pub fn print_system() -> anyhow::Result<()> {
    let root = root_from_env();
    let mut sampler = Sampler::new(root);
    sampler.sample();
    std::thread::sleep(Duration::from_millis(500));
    let sample = sampler.sample();
    println!("{}", serde_json::to_string_pretty(&sample)?);
    Ok(())
}
