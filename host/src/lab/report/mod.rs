//! Report outputs: the terminal table, report.json, report.csv and report.html.

pub mod csv;
pub mod html;
