//! Machine sets (the owner's Machines page): a name and a hostfile in
//! mlx.launch's JSON, parsed by the launcher's own parser
//! ([`crate::launch::Hostfile`]), stored in SQLite, and checked host by host
//! over ssh (`check`) before a run may use them.

pub mod check;
pub mod copy;
pub mod ranks;

use app::machines_dto::{HostCheck, MachineSetView};

use crate::api::ApiError;
use crate::launch::Hostfile;
use crate::store::{MachineSetRecord, Store, StoreError};

/// Longest machine set name.
const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A form field with a bad value; the message names the host entry and
    /// its field for a hostfile.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("a machine set named `{0}` exists already")]
    NameTaken(String),
    #[error("machine set {0} does not exist")]
    NotFound(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<MachineError> for ApiError {
    fn from(error: MachineError) -> Self {
        match error {
            MachineError::Invalid { field, message } => ApiError::invalid(field, message),
            taken @ MachineError::NameTaken(_) => ApiError::Conflict(taken.to_string()),
            missing @ MachineError::NotFound(_) => ApiError::NotFound(missing.to_string()),
            MachineError::Store(error) => error.into(),
        }
    }
}

/// A registration's name and hostfile, checked: the hostfile as the
/// launcher reads it (`hostfile: host 1: ...` names the entry and field).
pub fn parse(name: &str, hostfile: &str) -> Result<(String, Hostfile), MachineError> {
    let name = name.trim();
    let invalid = |field, message: String| MachineError::Invalid { field, message };
    if name.is_empty() {
        return Err(invalid("name", "give the machine set a name".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            format!("at most {MAX_NAME_CHARS} characters, no control characters"),
        ));
    }
    let parsed = Hostfile::parse(hostfile).map_err(|e| invalid("hostfile", format!("{e:#}")))?;
    Ok((name.to_string(), parsed))
}

/// Registers a machine set; its id.
pub fn register(store: &Store, name: &str, hostfile: &str) -> Result<i64, MachineError> {
    let (name, _) = parse(name, hostfile)?;
    store
        .insert_machine_set(&name, hostfile.trim())?
        .ok_or(MachineError::NameTaken(name))
}

pub fn delete(store: &Store, id: i64) -> Result<(), MachineError> {
    if store.delete_machine_set(id)? {
        Ok(())
    } else {
        Err(MachineError::NotFound(id))
    }
}

/// Every machine set as the page shows it.
pub fn list(store: &Store) -> Result<Vec<MachineSetView>, MachineError> {
    Ok(store.machine_sets()?.into_iter().map(view).collect())
}

/// The stored set `id` with its parsed hostfile.
pub fn load(store: &Store, id: i64) -> Result<(MachineSetRecord, Hostfile), MachineError> {
    let record = store.machine_set(id)?.ok_or(MachineError::NotFound(id))?;
    let (_, hostfile) = parse(&record.name, &record.hostfile)?;
    Ok((record, hostfile))
}

/// Checks every host of set `id` (blocking: ssh, one thread per host) and
/// stores the results; they are returned too.
pub fn check_and_store(
    store: &Store,
    id: i64,
    program: &std::path::Path,
) -> Result<Vec<HostCheck>, MachineError> {
    let (_, hostfile) = load(store, id)?;
    let checks = check::check_hosts(&hostfile, program);
    let json = serde_json::to_string(&checks).expect("host checks serialize");
    store.set_machine_check(id, &json)?;
    Ok(checks)
}

/// Set `name` for a run with a global batch of `batch_size`: it exists,
/// its last check passed on every host, and the batch divides among its
/// hosts. Refused otherwise, before any rank starts, naming the field.
pub fn ready_for(store: &Store, name: &str, batch_size: usize) -> Result<Hostfile, MachineError> {
    let invalid = |field, message: String| MachineError::Invalid { field, message };
    let record = store.machine_set_by_name(name)?.ok_or_else(|| {
        invalid(
            "machine_set",
            format!("no machine set named `{name}` (the Machines page lists them)"),
        )
    })?;
    let (_, hostfile) = parse(&record.name, &record.hostfile)?;
    let set = view(record);
    if set.checks.is_empty() {
        return Err(invalid(
            "machine_set",
            format!("`{name}` has not been checked yet: press Check on the Machines page"),
        ));
    }
    if let Some(failed) = set.checks.iter().find(|check| !check.ok) {
        return Err(invalid(
            "machine_set",
            format!(
                "`{name}` failed its last check: host `{}`: {}; fix it and press Check on the Machines page",
                failed.host,
                failed.reason.as_deref().unwrap_or("no reason")
            ),
        ));
    }
    let hosts = hostfile.hosts.len();
    if !batch_size.is_multiple_of(hosts) {
        return Err(invalid(
            "batch_size",
            format!("{batch_size} does not divide among the {hosts} hosts of `{name}`: each takes an equal share of every batch"),
        ));
    }
    Ok(hostfile)
}

fn view(record: MachineSetRecord) -> MachineSetView {
    let hosts = Hostfile::parse(&record.hostfile)
        .map(|h| h.hosts.into_iter().map(|host| host.ssh).collect())
        .unwrap_or_default();
    let checks = record
        .check_json
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    MachineSetView {
        id: record.id,
        name: record.name,
        hostfile: record.hostfile,
        hosts,
        created_at: record.created_at,
        checked_at: record.checked_at,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_names_the_field_and_host_entry_at_fault() {
        let error = |name: &str, hostfile: &str| parse(name, hostfile).unwrap_err().to_string();
        assert_eq!(error(" ", "[]"), "name: give the machine set a name");
        assert_eq!(
            error(
                "lab",
                r#"[{"ssh": "a", "ips": ["10.0.0.1"]}, {"ips": ["10.0.0.2"]}]"#
            ),
            "hostfile: host 1: no `ssh` name"
        );
        assert!(error("lab", "[{").starts_with("hostfile: not JSON: "));
        let (name, parsed) = parse(" lab ", r#"[{"ssh": "mac1", "ips": ["10.0.0.1"]}]"#).unwrap();
        assert_eq!(name, "lab");
        assert_eq!(parsed.hosts[0].ssh, "mac1");
    }
}
