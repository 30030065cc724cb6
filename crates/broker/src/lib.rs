//! Runnel broker.
