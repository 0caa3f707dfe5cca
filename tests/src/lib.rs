//! End-to-end tests across the vssl crates live in `tests/tests/`; this library holds what they
//! share.
