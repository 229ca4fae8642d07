//! Output: aligned tables for people, one JSON object per line for machines, and the
//! verdicts against the targets.

use serde_json::{json, Value};

pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Self {
        Table { title: title.to_string(), header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("| {} |", cells.join(" | "))
        };
        println!("\n{}\n", self.title);
        println!("{}", line(&self.header));
        println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
        for row in &self.rows {
            println!("{}", line(row));
        }
        println!();
    }
}

/// One machine-readable result line: `{"bench": NAME, ...fields}`.
pub fn emit(bench: &str, fields: Value) {
    let mut line = json!({"bench": bench});
    if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    println!("{line}");
}

/// A measurement held against its target.
pub struct Check {
    pub metric: String,
    pub measured: f64,
    pub unit: &'static str,
    pub target: f64,
    pub at_least: bool,
}

impl Check {
    pub fn at_most(metric: &str, measured: f64, target: f64, unit: &'static str) -> Self {
        Check { metric: metric.to_string(), measured, unit, target, at_least: false }
    }

    pub fn at_least(metric: &str, measured: f64, target: f64, unit: &'static str) -> Self {
        Check { metric: metric.to_string(), measured, unit, target, at_least: true }
    }

    pub fn met(&self) -> bool {
        if self.at_least {
            self.measured >= self.target
        } else {
            self.measured <= self.target
        }
    }
}

/// The targets table and one JSON line per check.
pub fn print_checks(checks: &[Check]) {
    let mut table = Table::new("Targets", &["metric", "measured", "target", "met"]);
    for check in checks {
        let bound = if check.at_least { "≥" } else { "≤" };
        table.row(vec![
            check.metric.clone(),
            format!("{} {}", number(check.measured), check.unit),
            format!("{bound} {} {}", number(check.target), check.unit),
            (if check.met() { "yes" } else { "NO" }).to_string(),
        ]);
        emit(
            "target",
            json!({"metric": check.metric, "measured": check.measured, "unit": check.unit, "target": check.target, "at_least": check.at_least, "met": check.met()}),
        );
    }
    table.print();
}

/// A number with as many decimals as its size deserves.
pub fn number(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

/// Bytes as decimal megabytes.
pub fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
