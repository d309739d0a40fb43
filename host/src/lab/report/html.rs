//! report.html: one self-contained page with the charts.
