//! Who is looking at a page. The server decides (see `server/src/access/`)
//! and provides it as Leptos context for each request; pages only read it,
//! to leave out actions the server would refuse anyway.

use leptos::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the owner token (or is on this machine without `--lan`).
    Owner,
    /// Holds the operator token: may start, stop and resume runs.
    Operator,
    /// Anyone else: reads and watches, changes nothing.
    Viewer,
}

impl Role {
    /// Start, stop and resume runs: the owner and an operator.
    pub fn can_run(self) -> bool {
        matches!(self, Self::Owner | Self::Operator)
    }

    /// Every other change (models, datasets, deletions, exports,
    /// comparisons, votes, chat, evaluations): the owner only.
    pub fn can_manage(self) -> bool {
        self == Self::Owner
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }
}

/// The role of the request being rendered. Without one in context (a
/// render path that forgot to provide it) the page shows the least.
pub fn current_role() -> Role {
    use_context::<Role>().unwrap_or(Role::Viewer)
}
