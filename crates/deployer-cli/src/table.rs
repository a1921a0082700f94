//! Columns that line up wherever the output goes, and one way to show a
//! time: RFC 3339 UTC, with how long ago added for a person at a terminal.

use time::OffsetDateTime;

/// Rows under a header; each column as wide as its widest cell (counted in
/// characters), two spaces between columns, the last column unpadded.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[i] - cell.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `2026-12-01T08:15:03Z`, and ` (5m ago)` after it for a person.
pub fn when(at: OffsetDateTime, now: OffsetDateTime, for_a_person: bool) -> String {
    let text = ledger::rfc3339(at);
    if for_a_person {
        format!("{text} ({})", ago(now - at))
    } else {
        text
    }
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`; `in 5m` for a time ahead.
pub fn ago(elapsed: time::Duration) -> String {
    let seconds = elapsed.whole_seconds();
    let (n, ahead) = (seconds.unsigned_abs(), seconds < 0);
    let amount = match n {
        0..=59 => format!("{n}s"),
        60..=3599 => format!("{}m", n / 60),
        3600..=86_399 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86_400),
    };
    if ahead {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// `1m 05s`, `42s`, `2h 03m`.
pub fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_cells_hold() {
        let mut table = Table::new(&["STATUS", "VERSION", "REASON"]);
        table.row(vec!["SUCCESS".into(), "1.4293f0f6".into(), "".into()]);
        table.row(vec![
            "AWAITING_APPROVAL".into(),
            "2.ab".into(),
            "waiting".into(),
        ]);
        table.row(vec!["FAILED".into(), "3.çé".into(), "boom".into()]);
        assert_eq!(
            table.render(),
            "STATUS             VERSION     REASON\n\
             SUCCESS            1.4293f0f6\n\
             AWAITING_APPROVAL  2.ab        waiting\n\
             FAILED             3.çé        boom\n"
        );
    }

    #[test]
    fn times_are_utc_with_how_long_ago_only_for_a_person() {
        let at = time::macros::datetime!(2026-12-01 09:15:03.5 +01:00);
        let now = time::macros::datetime!(2026-12-01 08:20:03 UTC);
        assert_eq!(when(at, now, false), "2026-12-01T08:15:03Z");
        assert_eq!(when(at, now, true), "2026-12-01T08:15:03Z (4m ago)");
        assert_eq!(ago(time::Duration::seconds(3 * 86_400 + 5)), "3d ago");
        assert_eq!(ago(time::Duration::seconds(-120)), "in 2m");
        assert_eq!(duration(65), "1m 05s");
    }
}
