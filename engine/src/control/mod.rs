//! Control plane: API types, the control socket server, the state file, and the switch model.
pub mod api;
pub mod client;
