//! Container logs in CRI's file format, read as the kubelet reads them for
//! `GET /containerLogs`.
//!
//! Each line of the file is `<RFC3339Nano time> <stdout|stderr> <F|P> <message>`: the
//! runtime writes a long output line as partial (`P`) chunks closed by a full (`F`) one,
//! and the reader joins them. Options are the pod log options: `tailLines` (the last N
//! lines), `sinceSeconds`/`sinceTime`, `timestamps` (each line prefixed with its time),
//! `limitBytes`, and `follow` (keep reading as the file grows until the container exits).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// One line of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The time as written (RFC 3339 with nanoseconds).
    pub time: &'a str,
    pub stream: &'a str,
    /// A chunk of a longer line: more follows, without a line break in between.
    pub partial: bool,
    pub message: &'a [u8],
}

/// Parses one line (without its `\n`); None for a line not in the format.
pub fn parse_line(line: &[u8]) -> Option<Entry<'_>> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let stream = std::str::from_utf8(fields.next()?).ok()?;
    if !matches!(stream, "stdout" | "stderr") {
        return None;
    }
    let partial = match fields.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Entry { time, stream, partial, message: fields.next().unwrap_or_default() })
}

/// What a client asked for (the pod log options the kubelet honours).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("invalid value for {0}: {1:?}")]
    Invalid(&'static str, String),
}

impl LogOptions {
    /// From the query parameters of `/containerLogs` (`now` anchors sinceSeconds).
    pub fn parse(query: &[(String, String)], now: Timestamp) -> Result<Self, OptionsError> {
        let mut options = LogOptions::default();
        let flag = |v: &str| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True");
        let number = |key: &'static str, v: &str| v.parse::<u64>().map_err(|_| OptionsError::Invalid(key, v.into()));
        for (key, value) in query {
            match key.as_str() {
                "follow" => options.follow = flag(value),
                "previous" => options.previous = flag(value),
                "timestamps" => options.timestamps = flag(value),
                "tailLines" => options.tail_lines = Some(number("tailLines", value)?),
                "limitBytes" => options.limit_bytes = Some(number("limitBytes", value)?),
                "sinceSeconds" => {
                    let seconds = number("sinceSeconds", value)?;
                    let since = i64::try_from(seconds)
                        .ok()
                        .and_then(|s| now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s)).ok())
                        .unwrap_or(Timestamp::MIN);
                    options.since = Some(since);
                }
                "sinceTime" => {
                    let time = value.parse().map_err(|_| OptionsError::Invalid("sinceTime", value.clone()))?;
                    options.since = Some(time);
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// Turns entries into what the client reads: partial chunks joined, the time prefixed to
/// each line when asked, entries before `since` skipped, output cut at `limitBytes`.
struct Writer {
    timestamps: bool,
    since: Option<Timestamp>,
    bytes_left: Option<u64>,
    /// Whether the next chunk starts a line (so gets the timestamp).
    line_start: bool,
}

impl Writer {
    fn new(options: &LogOptions) -> Self {
        Writer {
            timestamps: options.timestamps,
            since: options.since,
            bytes_left: options.limit_bytes,
            line_start: true,
        }
    }

    fn exhausted(&self) -> bool {
        self.bytes_left == Some(0)
    }

    /// Appends the output for `entry` to `out`.
    fn write(&mut self, entry: &Entry<'_>, out: &mut Vec<u8>) {
        if let Some(since) = self.since {
            if entry.time.parse::<Timestamp>().is_ok_and(|t| t < since) {
                return;
            }
        }
        let start = out.len();
        if self.timestamps && self.line_start {
            out.extend_from_slice(entry.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(entry.message);
        if !entry.partial {
            out.push(b'\n');
        }
        self.line_start = !entry.partial;
        if let Some(left) = &mut self.bytes_left {
            let written = (out.len() - start) as u64;
            if written > *left {
                out.truncate(start + *left as usize);
                *left = 0;
            } else {
                *left -= written;
            }
        }
    }
}

/// Where the last `n` lines begin in `content`: a line is the entries up to and
/// including a full (`F`) one.
fn tail_start(content: &[u8], n: u64) -> usize {
    if n == 0 {
        return content.len();
    }
    let mut ends = 0;
    let mut position = content.len();
    // Walk back over the file's lines; every full entry ends one log line.
    let mut end = content.len();
    while end > 0 {
        let start = content[..end.saturating_sub(1)].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let line = content[start..end].strip_suffix(b"\n").unwrap_or(&content[start..end]);
        if parse_line(line).is_some_and(|e| !e.partial) {
            if ends == n {
                return position;
            }
            ends += 1;
        }
        position = start;
        end = start;
    }
    0
}

/// Renders the complete lines of `content` (a trailing unterminated line is left for
/// later) and returns how many bytes were consumed.
fn render(content: &[u8], writer: &mut Writer, out: &mut Vec<u8>) -> usize {
    let mut consumed = 0;
    while let Some(newline) = content[consumed..].iter().position(|b| *b == b'\n') {
        if writer.exhausted() {
            break;
        }
        if let Some(entry) = parse_line(&content[consumed..consumed + newline]) {
            writer.write(&entry, out);
        }
        consumed += newline + 1;
    }
    consumed
}

/// Tells the follower whether the container may still write.
#[async_trait::async_trait]
pub trait Liveness: Send + Sync {
    async fn running(&self) -> bool;
}

/// Reads the log at `path` with `options` and sends the output in chunks; with
/// `follow`, polls the file every `poll` until `liveness` says the container stopped and
/// everything it wrote has been sent. Ends early when the receiver goes away.
pub async fn stream(
    path: PathBuf,
    options: LogOptions,
    poll: Duration,
    liveness: Box<dyn Liveness>,
    sender: mpsc::Sender<std::io::Result<Bytes>>,
) {
    if let Err(error) = stream_inner(&path, &options, poll, liveness.as_ref(), &sender).await {
        let _ = sender.send(Err(error)).await;
    }
}

async fn stream_inner(
    path: &std::path::Path,
    options: &LogOptions,
    poll: Duration,
    liveness: &dyn Liveness,
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let mut writer = Writer::new(options);
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => Some(file),
        // No output yet: a follower waits for the file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && options.follow => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut pending = Vec::new();
    if let Some(file) = &mut file {
        file.read_to_end(&mut pending).await?;
        let start = options.tail_lines.map_or(0, |n| tail_start(&pending, n));
        pending.drain(..start);
    }
    loop {
        let mut out = Vec::new();
        let consumed = render(&pending, &mut writer, &mut out);
        pending.drain(..consumed);
        if !out.is_empty() && sender.send(Ok(Bytes::from(out))).await.is_err() {
            return Ok(());
        }
        if !options.follow || writer.exhausted() {
            return Ok(());
        }
        // Look at liveness before reading: output written before the container stopped is
        // then read in this round or the next, and nothing is lost at the end.
        let running = liveness.running().await;
        let before = pending.len();
        match &mut file {
            Some(file) => {
                file.read_to_end(&mut pending).await?;
            }
            None => {
                if let Ok(opened) = tokio::fs::File::open(path).await {
                    file = Some(opened);
                    continue;
                }
            }
        }
        if pending.len() > before {
            continue;
        }
        if !running {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = sender.closed() => return Ok(()),
        }
        // A file replaced underneath (rotation) would have shrunk: start it again.
        if let Some(f) = &mut file {
            let position = f.stream_position().await?;
            if tokio::fs::metadata(path).await.is_ok_and(|m| m.len() < position) {
                file = tokio::fs::File::open(path).await.ok();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2024-01-01T00:00:01.000000001Z stdout F one\n\
2024-01-01T00:00:02.5Z stderr P tw\n\
2024-01-01T00:00:02.6Z stderr F o\n\
not a log line\n\
2024-01-01T00:00:03Z stdout F three\n";

    fn rendered(content: &[u8], options: &LogOptions) -> String {
        let start = options.tail_lines.map_or(0, |n| tail_start(content, n));
        let mut out = Vec::new();
        render(&content[start..], &mut Writer::new(options), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_cri_lines() {
        let entry = parse_line(b"2024-01-01T00:00:02.5Z stderr P tw o").unwrap();
        assert_eq!((entry.time, entry.stream, entry.partial), ("2024-01-01T00:00:02.5Z", "stderr", true));
        assert_eq!(entry.message, b"tw o");
        assert_eq!(parse_line(b"2024-01-01T00:00:02.5Z stdout F").unwrap().message, b"");
        assert!(parse_line(b"2024-01-01T00:00:02.5Z stdin F x").is_none());
        assert!(parse_line(b"2024-01-01T00:00:02.5Z stdout X x").is_none());
        assert!(parse_line(b"garbage").is_none());
    }

    #[test]
    fn joins_partial_lines_and_prefixes_timestamps_once_per_line() {
        assert_eq!(rendered(LOG, &LogOptions::default()), "one\ntwo\nthree\n");
        let stamped = rendered(LOG, &LogOptions { timestamps: true, ..Default::default() });
        assert_eq!(
            stamped,
            "2024-01-01T00:00:01.000000001Z one\n2024-01-01T00:00:02.5Z two\n2024-01-01T00:00:03Z three\n"
        );
    }

    #[test]
    fn tail_counts_whole_lines() {
        assert_eq!(rendered(LOG, &LogOptions { tail_lines: Some(2), ..Default::default() }), "two\nthree\n");
        assert_eq!(rendered(LOG, &LogOptions { tail_lines: Some(1), ..Default::default() }), "three\n");
        assert_eq!(rendered(LOG, &LogOptions { tail_lines: Some(0), ..Default::default() }), "");
        assert_eq!(rendered(LOG, &LogOptions { tail_lines: Some(10), ..Default::default() }), "one\ntwo\nthree\n");
    }

    #[test]
    fn since_and_limit_bytes() {
        let since = Some("2024-01-01T00:00:02Z".parse().unwrap());
        assert_eq!(rendered(LOG, &LogOptions { since, ..Default::default() }), "two\nthree\n");
        assert_eq!(rendered(LOG, &LogOptions { limit_bytes: Some(6), ..Default::default() }), "one\ntw");
    }

    #[test]
    fn options_from_the_query() {
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let options =
            LogOptions::parse(&query(&[("follow", "true"), ("tailLines", "5"), ("sinceSeconds", "60")]), now).unwrap();
        assert!(options.follow && !options.timestamps);
        assert_eq!(options.tail_lines, Some(5));
        assert_eq!(options.since, Some("2024-01-01T00:00:00Z".parse().unwrap()));
        assert!(LogOptions::parse(&query(&[("tailLines", "-1")]), now).is_err());
        assert!(LogOptions::parse(&query(&[("sinceTime", "yesterday")]), now).is_err());
    }

    struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);

    #[async_trait::async_trait]
    impl Liveness for Flag {
        async fn running(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn follow_sees_appended_lines_and_ends_when_the_container_stops() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, b"2024-01-01T00:00:01Z stdout F first\n").unwrap();
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (sender, mut receiver) = mpsc::channel(16);
        let options = LogOptions { follow: true, ..Default::default() };
        let task = tokio::spawn(stream(
            path.clone(),
            options,
            Duration::from_millis(10),
            Box::new(Flag(running.clone())),
            sender,
        ));
        assert_eq!(receiver.recv().await.unwrap().unwrap(), "first\n");
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        // Half a line first: nothing is sent until the line is complete.
        file.write_all(b"2024-01-01T00:00:02Z stdout F sec").unwrap();
        file.flush().unwrap();
        file.write_all(b"ond\n").unwrap();
        assert_eq!(receiver.recv().await.unwrap().unwrap(), "second\n");
        file.write_all(b"2024-01-01T00:00:03Z stdout F last words\n").unwrap();
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut rest = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            rest.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(rest, b"last words\n", "what was written before the exit is sent, then the stream ends");
        task.await.unwrap();
    }
}
