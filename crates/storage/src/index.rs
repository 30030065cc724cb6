//! Sparse offset index and time index of one segment.
