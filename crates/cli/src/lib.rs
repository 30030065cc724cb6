//! Runnel client commands.
