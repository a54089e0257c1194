//! The sample dataset the product ships.
