//! Aligned text tables for human output (`--json` is the script format).

use std::io::Write;

use crate::commands::style::{Color, Style};
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
    writeln!(out, "{}", line(headers.to_vec(), false))?;
    for row in rows {
        writeln!(
            out,
            "{}",
            line(row.iter().map(String::as_str).collect(), true)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut out = Vec::new();
        print(&mut out, &["A", "BB"], &[vec!["xxx".into(), "y".into()]]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A    BB\nxxx  y\n");
    }
}
