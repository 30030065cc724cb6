//! Runnel's cluster metadata quorum.
pub mod controller;
pub mod image;
pub mod records;
