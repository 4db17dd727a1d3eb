//! Markdown tables of figures, padded for reading in a terminal.

/// Formats nanoseconds with a unit that keeps three or four significant digits.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 10_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 10_000_000.0 {
        format!("{:.3} ms", ns / 1e6)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// A Markdown table, columns padded for reading in a terminal.
#[derive(Debug)]
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column heads.
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as heads).
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.head.len(), "table row width");
        self.rows.push(cells);
    }

    /// The table, then an empty line.
    pub fn render(&self) -> String {
        let n = self.head.len();
        let width: Vec<usize> = (0..n)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.head[i].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            out.push('|');
            for (c, w) in cells.iter().zip(&width) {
                let pad = w - c.chars().count();
                out.push_str(&format!(" {c}{} |", " ".repeat(pad)));
            }
            out.push('\n');
        };
        line(&mut out, &self.head);
        out.push('|');
        for (i, w) in width.iter().enumerate() {
            // Right-align the columns of numbers, left-align the others.
            let text = self.rows.iter().any(|r| {
                r[i].chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '*')
            });
            if i == 0 || text {
                out.push_str(&format!("{}|", "-".repeat(w + 2)));
            } else {
                out.push_str(&format!("{}:|", "-".repeat(w + 1)));
            }
        }
        out.push('\n');
        for r in &self.rows {
            line(&mut out, r);
        }
        out.push('\n');
        out
    }

    /// Prints [`Table::render`].
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_right_text_left() {
        let mut t = Table::new(&["variant", "p50"]);
        t.row(vec!["memcpy".into(), fmt_ns(1234.0)]);
        assert_eq!(
            t.render(),
            "| variant | p50     |\n|---------|--------:|\n| memcpy  | 1.23 µs |\n\n"
        );
        assert_eq!(fmt_ns(12.0), "12 ns");
        assert_eq!(fmt_ns(25_000_000.0), "25.00 ms");
    }
}
