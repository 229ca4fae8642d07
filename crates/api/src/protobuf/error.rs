//! Transcoding errors that say where in the object they happened.

use std::fmt;

#[derive(Debug)]
pub(super) struct Error {
    /// Innermost segment first: field names, `[index]` or `[map key]`.
    path: Vec<String>,
    message: String,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error { path: Vec::new(), message: message.into() }
    }

    /// Records that the error happened inside `segment` (empty for inline fields).
    pub fn at(mut self, segment: impl Into<String>) -> Self {
        let segment = segment.into();
        if !segment.is_empty() {
            self.path.push(segment);
        }
        self
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.path.iter().rev().enumerate() {
            if i > 0 && !segment.starts_with('[') {
                f.write_str(".")?;
            }
            f.write_str(segment)?;
        }
        if !self.path.is_empty() {
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_the_path_outermost_first() {
        let e = Error::new("truncated").at("image").at("[0]").at("containers").at("").at("spec");
        assert_eq!(e.to_string(), "spec.containers[0].image: truncated");
        assert_eq!(Error::new("bad").to_string(), "bad");
    }
}
