//! The polling worker.
