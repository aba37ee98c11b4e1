//! Prometheus's text exposition format, version 0.0.4: what `GET /metrics`
//! answers.
//!
//! A page is a list of metric families. Each starts with a `# HELP` line
//! (what it means) and a `# TYPE` line (`counter`, `gauge` or `histogram`),
//! followed by its samples, one per line: the name, the labels in braces if
//! any, and the value. A family's samples are never interleaved with
//! another's. A histogram is written as its cumulative buckets
//! (`NAME_bucket{le="0.001"}`, bounds ascending, `le="+Inf"` last), then
//! `NAME_sum` and `NAME_count` (equal to the `+Inf` bucket). Label values
//! escape `\`, `"` and line breaks; help text escapes `\` and line breaks.

use crate::node::HistogramSnapshot;
use std::fmt::Write;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever goes up (from the process's start); by convention its
    /// name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page of metrics being written.
#[derive(Debug, Default)]
pub struct Page {
    out: String,
}

impl Page {
    pub fn new() -> Page {
        Page::default()
    }

    /// Starts a family: its help and type lines. Its samples follow, with
    /// [`Page::sample`].
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    /// One sample of the family just started.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                for c in text.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Value) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram family; each bound and the sum are divided by `per_unit`
    /// (1e6 for a histogram kept in microseconds and shown in seconds,
    /// Prometheus's unit of time; a division, since 50 / 1e6 prints as
    /// `0.00005` where 50 * 1e-6 would not).
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot, per_unit: f64) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        for (i, &count) in h.cumulative.iter().enumerate() {
            let le = match h.bounds.get(i) {
                Some(&bound) => float(bound as f64 / per_unit),
                None => "+Inf".to_string(),
            };
            self.sample(&bucket, &[("le", &le)], count);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum as f64 / per_unit);
        self.sample(&format!("{name}_count"), &[], h.count());
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A sample's value.
pub trait Value {
    fn write_to(&self, out: &mut String);
}

impl Value for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        out.push_str(&float(*self));
    }
}

/// A float as Prometheus reads it: Rust prints the shortest decimal that
/// reads back as the same number, without an exponent (`0.00005`, `2`).
fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_escaped_samples() {
        let mut page = Page::new();
        page.single("x_total", Kind::Counter, "a \\ count\nof x", 3u64);
        page.family("y", Kind::Gauge, "y by label");
        page.sample("y", &[("a", "1"), ("b", "q\"\\\n")], 0.5f64);
        assert_eq!(
            page.finish(),
            "# HELP x_total a \\\\ count\\nof x\n# TYPE x_total counter\nx_total 3\n\
             # HELP y y by label\n# TYPE y gauge\ny{a=\"1\",b=\"q\\\"\\\\\\n\"} 0.5\n"
        );
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_then_inf_sum_and_count() {
        let h = HistogramSnapshot {
            bounds: &[50, 1000],
            cumulative: vec![1, 3, 4],
            sum: 2_000_050,
        };
        let mut page = Page::new();
        page.histogram("lat_seconds", "latency", &h, 1e6);
        let text = page.finish();
        assert!(
            text.ends_with(
                "lat_seconds_bucket{le=\"0.00005\"} 1\nlat_seconds_bucket{le=\"0.001\"} 3\n\
                 lat_seconds_bucket{le=\"+Inf\"} 4\nlat_seconds_sum 2.00005\nlat_seconds_count 4\n"
            ),
            "{text}"
        );
    }
}
