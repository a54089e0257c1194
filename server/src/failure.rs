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

/// `reason`, followed by advice when the cause is recognisable.
pub fn explain(reason: String) -> String {
    let lower = reason.to_lowercase();
    if OUT_OF_MEMORY_SIGNS.iter().any(|sign| lower.contains(sign)) {
        format!("{reason}\n\n{OUT_OF_MEMORY_ADVICE}")
    } else {
        reason
    }
}

/// A worker killed by SIGKILL that nobody asked to stop: on Linux that is
/// the kernel's out-of-memory killer.
pub fn killed_worker(exit: &str) -> String {
    format!("the worker process was killed by the system ({exit}) while training.\n\n{OUT_OF_MEMORY_ADVICE}")
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
    fn other_failures_are_left_as_they_are() {
        let reason = "dataset /data/x: train.jsonl:3: invalid JSON".to_string();
        assert_eq!(explain(reason.clone()), reason);
    }
}
