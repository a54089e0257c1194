//! The MLX training service. Everything here runs inside a worker process:
//! the server never links MLX calls on its own thread.

pub mod device;
