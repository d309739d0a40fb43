//! report.csv: one row per policy and setting.
