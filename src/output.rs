//! Standard output for command results, as `main` hands it to [`crate::run`].
//!
//! When the reader of stdout goes away (`ldm up | head -1`), ldm does not
//! stop half way nor take the closed pipe for success: [`Stdout`] swallows
//! the broken pipe, drops what follows, and the command runs to its end, so
//! its exit code says whether its containers failed, whatever happened to
//! stdout. Other write errors (a full disk behind a redirection) still fail
//! the command as [`crate::Error::Output`].

use std::io::{self, Write};

/// A writer that turns "the reader is gone" into "discard the rest".
pub struct Stdout<W: Write> {
    inner: W,
    closed: bool,
}

impl<W: Write> Stdout<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Stdout<W> {
        Stdout {
            inner,
            closed: false,
        }
    }

    /// True once a write found the reader gone.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn gone(&mut self, e: io::Error) -> io::Result<()> {
        if e.kind() == io::ErrorKind::BrokenPipe {
            self.closed = true;
            Ok(())
        } else {
            Err(e)
        }
    }
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Ok(n) => Ok(n),
            Err(e) => self.gone(e).map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Ok(()) => Ok(()),
            Err(e) => self.gone(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pipe {
        open_for: usize,
        got: Vec<u8>,
        fail: io::ErrorKind,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.got.len() >= self.open_for {
                return Err(io::Error::from(self.fail));
            }
            self.got.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_drops_the_rest_and_is_remembered() {
        let mut out = Stdout::new(Pipe {
            open_for: 3,
            got: Vec::new(),
            fail: io::ErrorKind::BrokenPipe,
        });
        writeln!(out, "one").unwrap();
        writeln!(out, "two").unwrap();
        writeln!(out, "three").unwrap();
        assert!(out.closed());
        assert_eq!(out.inner.got, b"one\n");
    }

    #[test]
    fn other_write_errors_still_fail() {
        let mut out = Stdout::new(Pipe {
            open_for: 0,
            got: Vec::new(),
            fail: io::ErrorKind::StorageFull,
        });
        assert!(writeln!(out, "x").is_err());
        assert!(!out.closed());
    }
}
