//! Aligned text tables for human output (`--json` is the script format).

use std::io::Write;

use crate::Error;

/// Prints `rows` under `headers`, columns padded to their widest cell, with
/// no trailing spaces.
pub fn print(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> Result<(), Error> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
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
