//! A failed run's reason in words a user can act on: the error as it came,
//! plus what to change when the cause is recognisable (memory, mostly).

/// What MLX, the C++ runtime and the OS say when memory runs out
/// (lowercase; matched case-insensitively).
const OUT_OF_MEMORY_SIGNS: [&str; 6] = [
    "bad_alloc",
    "out of memory",
    "unable to allocate",
    "cannot allocate memory",
    "failed to allocate",
    "insufficient memory",
];

const OUT_OF_MEMORY_ADVICE: &str = "The machine ran out of memory. Lower batch_size or \
max_seq_length, adapt fewer layers (num_layers), recompute activations (grad_checkpoint), \
or use QLoRA; \"Check memory and config\" on the new-run page estimates what a setting needs.";

/// `reason` without source locations, followed by advice when the cause
/// is recognisable.
pub fn explain(reason: String) -> String {
    let reason = without_source_locations(&reason);
    let lower = reason.to_lowercase();
    if OUT_OF_MEMORY_SIGNS.iter().any(|sign| lower.contains(sign)) {
        format!("{reason}\n\n{OUT_OF_MEMORY_ADVICE}")
    } else {
        reason
    }
}

/// The kernel's counts of out-of-memory kills: this process's cgroup's
/// (`memory.events`, cgroup v2) and the whole system's (`/proc/vmstat`).
/// Taken when a worker starts and when it dies, they tell whether the OOM
/// killer acted in between; None where the file is not readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OomKills {
    pub cgroup: Option<u64>,
    pub system: Option<u64>,
}

impl OomKills {
    pub fn now() -> Self {
        let cgroup = cgroup_oom_kills();
        let system = std::fs::read_to_string("/proc/vmstat")
            .ok()
            .and_then(|vmstat| counter(&vmstat, "oom_kill"));
        Self { cgroup, system }
    }

    /// Whether the kernel counted an OOM kill between `self` and `later`.
    fn grew_by(self, later: OomKills) -> Option<bool> {
        let grew = |before: Option<u64>, after: Option<u64>| Some(after? > before?);
        match (
            grew(self.cgroup, later.cgroup),
            grew(self.system, later.system),
        ) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (None, None) => None,
            _ => Some(false),
        }
    }
}

/// This process's memory cgroup's OOM kill count: v2's `memory.events`, or
/// v1's `memory.oom_control` (tried at the cgroup's path, then at the mount's
/// root, which is the cgroup inside a cgroup namespace).
fn cgroup_oom_kills() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut candidates = Vec::new();
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if controllers.is_empty() {
            candidates.push(format!("/sys/fs/cgroup{path}/memory.events"));
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(format!("/sys/fs/cgroup/memory{path}/memory.oom_control"));
            candidates.push("/sys/fs/cgroup/memory/memory.oom_control".into());
        }
    }
    candidates.iter().find_map(|file| {
        let text = std::fs::read_to_string(file.replace("//", "/")).ok()?;
        counter(&text, "oom_kill")
    })
}

/// `name value` lines (`memory.events`, `/proc/vmstat`).
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

/// A worker killed by SIGKILL that nobody here asked to stop: what is known
/// of who killed it, from the kernel's OOM counters before and after.
pub fn killed_worker(exit: &str, before: OomKills, after: OomKills) -> String {
    match before.grew_by(after) {
        Some(true) => format!(
            "the worker process was killed by the kernel's out-of-memory killer ({exit}).\n\n{OUT_OF_MEMORY_ADVICE}"
        ),
        Some(false) => format!(
            "the worker process was killed by signal 9 ({exit}), by another process or the system; the kernel counted no out-of-memory kill meanwhile, so it was not the OOM killer"
        ),
        None => format!(
            "the worker process was killed by signal 9 ({exit}), by another process or the system; this machine does not show out-of-memory kills, so it may also have been the OOM killer"
        ),
    }
}

/// Removes the source locations a Rust error may carry (MLX's exceptions
/// print where they were raised: `... at /rustc/<hash>/library/...rs:250:5`):
/// they tell a user nothing and show the build machine's paths.
pub fn without_source_locations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" at ") {
        let after = &rest[at + 4..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == ',' || c == ')')
            .unwrap_or(after.len());
        out.push_str(&rest[..at]);
        if !is_source_location(&after[..end]) {
            out.push_str(" at ");
            out.push_str(&after[..end]);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `path/file.rs:line:column`.
fn is_source_location(token: &str) -> bool {
    let mut parts = token.rsplitn(3, ':');
    let (Some(column), Some(line), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    file.ends_with(".rs") && number(line) && number(column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_failures_say_what_to_lower() {
        let explained = explain("[metal::malloc] Unable to allocate 4294967296 bytes".into());
        assert!(explained.starts_with("[metal::malloc] Unable to allocate"));
        assert!(explained.contains("ran out of memory"), "{explained}");
        assert!(explained.contains("batch_size"));
        let explained = explain("std::bad_alloc".into());
        assert!(explained.contains("num_layers"), "{explained}");
    }

    #[test]
    fn source_locations_are_dropped() {
        assert_eq!(
            explain(
                "\"[load] bad header\" at /rustc/0a1b2c/library/core/src/ops/function.rs:250:5"
                    .into()
            ),
            "\"[load] bad header\""
        );
        assert_eq!(
            without_source_locations(
                "a at src/x.rs:1:2, then b at step 4 at engine/src/lora.rs:10:3"
            ),
            "a, then b at step 4"
        );
    }

    #[test]
    fn only_a_counted_oom_kill_is_called_one() {
        let counts = |cgroup, system| OomKills { cgroup, system };
        let exit = "signal: 9 (SIGKILL)";
        let oom = killed_worker(exit, counts(Some(0), Some(7)), counts(Some(1), Some(8)));
        assert!(
            oom.contains("out-of-memory killer") && oom.contains("batch_size"),
            "{oom}"
        );
        let system_only = killed_worker(exit, counts(None, Some(7)), counts(None, Some(8)));
        assert!(
            system_only.contains("out-of-memory killer"),
            "{system_only}"
        );
        let other = killed_worker(exit, counts(Some(0), Some(7)), counts(Some(0), Some(7)));
        assert!(
            other.contains("by another process or the system"),
            "{other}"
        );
        assert!(other.contains("not the OOM killer"), "{other}");
        assert!(!other.contains("ran out of memory"), "{other}");
        let unknown = killed_worker(exit, counts(None, None), counts(None, None));
        assert!(unknown.contains("may also have been"), "{unknown}");
        assert_eq!(counter("low 0\noom 2\noom_kill 3\n", "oom_kill"), Some(3));
        assert_eq!(counter("oom 2\n", "oom_kill"), None);
    }

    #[test]
    fn other_failures_are_left_as_they_are() {
        let reason = "dataset /data/x: train.jsonl:3: invalid JSON".to_string();
        assert_eq!(explain(reason.clone()), reason);
    }
}
