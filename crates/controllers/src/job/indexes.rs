//! Completion indexes of Indexed Jobs as status.completedIndexes writes them: sorted,
//! comma-separated, with runs of consecutive indexes as ranges (`1,3-5,7`).

use std::collections::BTreeSet;

/// Parses `1,3-5,7`; malformed parts are skipped (the field is written by us).
pub fn parse(text: &str) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                if let (Ok(first), Ok(last)) = (first.parse::<i32>(), last.parse::<i32>()) {
                    indexes.extend(first..=last);
                }
            }
            None => indexes.extend(part.parse::<i32>().ok()),
        }
    }
    indexes
}

pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last = iter.next().unwrap_or(last);
        }
        parts.push(if first == last { first.to_string() } else { format!("{first}-{last}") });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        let set = parse("1,3-5,7");
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![1, 3, 4, 5, 7]);
        assert_eq!(format(&set), "1,3-5,7");
        assert_eq!(format(&parse("")), "");
        assert_eq!(format(&BTreeSet::from([0, 1, 2])), "0-2");
    }
}
