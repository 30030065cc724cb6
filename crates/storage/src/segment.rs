//! One segment: `<base-offset>.log` plus its `.index` and `.timeindex`.
