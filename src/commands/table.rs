//! Aligned text tables for human output (`--json` is the script format).
//! Every cell is shown with its control characters escaped (`text.rs`):
//! cells hold values from files and from LXD.

use std::io::Write;

use crate::commands::style::{Color, Style};
use crate::commands::text;
use crate::Error;

/// Prints `rows` under `headers`, columns padded to their widest cell, with
/// no trailing spaces.
pub fn print(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> Result<(), Error> {
    print_styled(out, headers, rows, Style::plain(), &|_, _| None)
}

/// Like [`print`], colouring cell text chosen by `color(column, text)`;
/// padding is computed on the plain text so columns stay aligned.
pub fn print_styled(
    out: &mut dyn Write,
    headers: &[&str],
    rows: &[Vec<String>],
    style: Style,
    color: &dyn Fn(usize, &str) -> Option<Color>,
) -> Result<(), Error> {
    let escaped: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| text::escape(c)).collect())
        .collect();
    let rows = fit(&escaped, terminal_width());
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>, paint: bool| {
        let mut parts = Vec::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = if i + 1 == cells.len() {
                String::new()
            } else {
                " ".repeat(w - cell.chars().count() + 2)
            };
            let c = if paint { color(i, cell) } else { None };
            parts.push(format!("{}{pad}", style.paint(cell, c)));
        }
        parts.concat().trim_end().to_string()
    };
    writeln!(out, "{}", line(headers.to_vec(), false)).map_err(Error::Output)?;
    for row in rows {
        writeln!(
            out,
            "{}",
            line(row.iter().map(String::as_str).collect(), true)
        )
        .map_err(Error::Output)?;
    }
    Ok(())
}

/// Columns of the terminal stdout is on, if it is one.
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    // SAFETY: TIOCGWINSZ fills the winsize struct we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// Shortens the last column (descriptions, notes) so rows fit `width`.
fn fit(rows: &[Vec<String>], width: Option<usize>) -> Vec<Vec<String>> {
    let Some(width) = width else {
        return rows.to_vec();
    };
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    if cols == 0 {
        return rows.to_vec();
    }
    let lead: usize = (0..cols - 1)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
                + 2
        })
        .sum();
    let room = width.saturating_sub(lead).max(10);
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(last) = r.last_mut() {
                if last.chars().count() > room {
                    *last = last.chars().take(room - 1).chain(['…']).collect();
                }
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_last_column_is_cut_to_the_width() {
        let rows = vec![vec!["name".to_string(), "x".repeat(100)]];
        let fitted = super::fit(&rows, Some(40));
        assert_eq!(fitted[0][1].chars().count(), 40 - 6);
        assert!(fitted[0][1].ends_with('…'));
        assert_eq!(super::fit(&rows, None), rows);
    }

    use super::*;

    #[test]
    fn columns_align() {
        let mut out = Vec::new();
        print(&mut out, &["A", "BB"], &[vec!["xxx".into(), "y".into()]]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A    BB\nxxx  y\n");
    }
}
