//! One module per page, each beside its server functions.

pub mod runs;
