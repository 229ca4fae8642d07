//! Key-range helpers shared by the backends, so that both agree exactly on which keys a
//! prefix and a continue token select.

/// True when `key` belongs to a range over `prefix` that resumes after `start_after`.
pub(crate) fn selected(key: &str, prefix: &str, start_after: Option<&str>) -> bool {
    key.starts_with(prefix) && start_after.is_none_or(|after| key > after)
}

/// The exclusive upper bound, as bytes, of every key that starts with `prefix`.
///
/// Keys are UTF-8, and UTF-8 never contains the byte 0xFF, so `[0xFF]` bounds every key
/// (the empty prefix), and bumping the last byte of a non-empty prefix cannot overflow
/// (the last byte of UTF-8 text is at most 0xF4). The result need not be valid UTF-8,
/// which is why the sqlite backend stores keys as BLOBs compared bytewise.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0xFF),
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        assert_eq!(prefix_end(""), vec![0xFF]);
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        let end = prefix_end("/pods/");
        for key in ["/pods/", "/pods/x", "/pods/\u{10FFFF}"] {
            assert!(key.as_bytes() < end.as_slice(), "{key}");
        }
        for key in ["/pods0", "/podsa", "/q"] {
            assert!(key.as_bytes() >= end.as_slice(), "{key}");
        }
    }

    #[test]
    fn selected_honours_prefix_and_start_after() {
        assert!(selected("/a/b", "/a/", None));
        assert!(!selected("/b/a", "/a/", None));
        assert!(!selected("/a/b", "/a/", Some("/a/b")));
        assert!(selected("/a/c", "/a/", Some("/a/b")));
    }
}
