//! Machines (the owner's): machine sets registered from an mlx.launch
//! hostfile, each host checked over ssh before a run may use the set.
//! Plain forms: register, check and delete all work without JavaScript.

use leptos::prelude::*;

use crate::layout::{Heading, Page};
use crate::machines_dto::{HostCheck, MachineSetView};
use crate::pages::catalog::format_bytes;
use crate::pages::{posted_error, ErrorBox};

/// What a non-owner reads instead of the machine sets (host names and
/// addresses of the owner's network).
const OWNER_ONLY: &str = "Machine sets are the owner's: open the owner's link to see them";

#[server(prefix = "/fn", endpoint = "machines/list")]
pub async fn list_machine_sets() -> Result<Vec<MachineSetView>, ServerFnError> {
    if !crate::role::current_role().can_manage() {
        return Err(ServerFnError::new(OWNER_ONLY));
    }
    let backend = expect_context::<crate::SharedBackend>();
    backend.machine_sets().map_err(ServerFnError::new)
}

#[server(prefix = "/fn", endpoint = "machines/register")]
pub async fn register_machine_set(name: String, hostfile: String) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let id = backend
        .register_machine_set(name, hostfile)
        .map_err(ServerFnError::new)?;
    backend.redirect(&format!("/machines#set-{id}"));
    Ok(())
}

/// Checks every host and comes back to the page with the results (a plain
/// form post: it waits for ssh).
#[server(prefix = "/fn", endpoint = "machines/check")]
pub async fn check_machine_set(id: i64) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend
        .check_machine_set(id)
        .await
        .map_err(ServerFnError::new)?;
    backend.redirect(&format!("/machines#set-{id}"));
    Ok(())
}

#[server(prefix = "/fn", endpoint = "machines/delete")]
pub async fn delete_machine_set(id: i64) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.delete_machine_set(id).map_err(ServerFnError::new)?;
    backend.redirect("/machines");
    Ok(())
}

#[component]
pub fn MachinesPage() -> impl IntoView {
    let sets = Resource::new_blocking(|| (), |_| list_machine_sets());
    let error = posted_error();
    view! {
        <Page current="/machines">
            <Heading text="Machines" />
            <ErrorBox message=error />
            <Suspense fallback=|| view! { <p class="muted">"Loading machine sets..."</p> }>
                {move || Suspend::new(async move {
                    match sets.await {
                        Ok(sets) => view! { <MachineSets sets /> }.into_any(),
                        Err(error) => view! {
                            <p class="notice" id="machines-refused">
                                {crate::pages::server_error_text(&error.to_string())}
                            </p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

#[component]
fn MachineSets(sets: Vec<MachineSetView>) -> impl IntoView {
    let empty = sets.is_empty();
    let sets = sets
        .into_iter()
        .map(|set| view! { <MachineSet set /> })
        .collect_view();
    view! {
        <p class="muted">
            "A machine set is an mlx.launch hostfile: one rank per host, started over "
            <code>"ssh -o BatchMode=yes"</code>
            " (extra options from " <code>"LORALAB_SSH_OPTIONS"</code>
            "). Each host needs this Loralab at the same path; Check tells."
        </p>
        {empty.then(|| view! { <p class="muted" id="no-machine-sets">"No machine sets yet."</p> })}
        <div id="machine-sets">{sets}</div>
        <div class="panel">
            <h2>"Register a machine set"</h2>
            <form method="post" action="/fn/machines/register" id="register-machine-set">
                <label>
                    "Name"
                    <input type="text" name="name" required maxlength="64" />
                </label>
                <label>
                    "Hostfile (mlx.launch's JSON)"
                    <textarea name="hostfile" rows="6" required
                        placeholder=r#"[{"ssh": "mac1", "ips": ["10.0.0.1"]}, {"ssh": "mac2", "ips": ["10.0.0.2"]}]"#>
                    </textarea>
                </label>
                <button type="submit" class="primary" id="register">"Register"</button>
            </form>
        </div>
    }
}

#[component]
fn MachineSet(set: MachineSetView) -> impl IntoView {
    let id = set.id;
    let verdict = if set.checks.is_empty() {
        ("not checked yet".to_string(), "queued")
    } else if set.passed() {
        (
            format!(
                "every host passed ({})",
                set.checked_at.clone().unwrap_or_default()
            ),
            "done",
        )
    } else {
        (
            format!(
                "a host failed its check ({})",
                set.checked_at.clone().unwrap_or_default()
            ),
            "failed",
        )
    };
    let rows = if set.checks.is_empty() {
        set.hosts
            .iter()
            .enumerate()
            .map(|(rank, host)| host_row(rank, host, None))
            .collect_view()
    } else {
        set.checks
            .iter()
            .enumerate()
            .map(|(rank, check)| host_row(rank, &check.host, Some(check)))
            .collect_view()
    };
    view! {
        <div class="panel machine-set" id=format!("set-{id}") data-machine-set=set.name.clone()>
            <h2>{set.name.clone()}</h2>
            <p>
                <span class=format!("status {}", verdict.1) data-check-verdict="">{verdict.0}</span>
            </p>
            <table class="hosts">
                <thead>
                    <tr>
                        <th class="num">"Rank"</th><th>"Host"</th><th>"Check"</th>
                        <th>"Loralab"</th><th class="num">"Free memory"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            <details>
                <summary>"Hostfile"</summary>
                <pre class="log">{set.hostfile.clone()}</pre>
            </details>
            <div class="actions">
                <form method="post" action="/fn/machines/check">
                    <input type="hidden" name="id" value=id />
                    <button type="submit" class="primary" id=format!("check-{id}")>"Check"</button>
                </form>
                <form method="post" action="/fn/machines/delete">
                    <input type="hidden" name="id" value=id />
                    <button type="submit" class="danger" id=format!("delete-{id}")>
                        {format!("Delete {}", set.name)}
                    </button>
                </form>
            </div>
        </div>
    }
}

fn host_row(rank: usize, host: &str, check: Option<&HostCheck>) -> impl IntoView {
    let (state, text) = match check {
        None => ("unchecked", "–".to_string()),
        Some(check) if check.ok => ("ok", "ok".to_string()),
        Some(check) => ("failed", check.reason.clone().unwrap_or_default()),
    };
    let version = check
        .and_then(|c| c.version.clone())
        .unwrap_or_else(|| "–".into());
    let memory = check
        .and_then(|c| c.free_memory_bytes)
        .map_or_else(|| "–".to_string(), format_bytes);
    view! {
        <tr data-host=host.to_string() data-check=state>
            <td class="num">{rank}</td>
            <td>{host.to_string()}</td>
            <td data-figure="check">{text}</td>
            <td data-figure="version">{version}</td>
            <td class="num" data-figure="free_memory">{memory}</td>
        </tr>
    }
}
