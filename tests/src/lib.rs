//! Helpers for end-to-end tests: process guards, testpmd, uswitchd.
