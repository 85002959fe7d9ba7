//! Control plane: API types, the control socket server, the state file, and the switch model.
//!
//! - [`api`], [`client`]: the wire contract (one JSON line each way) and its client.
//! - [`switch`]: the desired configuration and the validate → apply → persist rule.
//! - [`backend`]: the seam to the dataplane and port constructors; [`fake`] implements it in memory.
//! - [`state`]: the atomically written state file.
//! - [`server`]: the control socket and request dispatch.
//! - [`daemon`]: startup (state file vs `--config`), and shutdown, used by `uswitchd`.
//! - [`render`]: human-readable tables for `uswitchctl`.
pub mod api;
pub mod backend;
pub mod client;
pub mod daemon;
pub mod fake;
pub mod render;
pub mod server;
pub mod state;
pub mod switch;
