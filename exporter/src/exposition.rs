//! The `/metrics` text of every probe, written piece by piece while it is sent.
//!
//! A scrape takes the probes' lines family by family from the [`Board`] (a snapshot: the blocks
//! are shared, not copied) and writes each family's header once, then its blocks.
//! Ten thousand probes make 4.4 MB of text; it is not built in one buffer and sent after:
//! [`TextBody`] writes the next piece of about [`PIECE`] bytes each time the connection asks
//! for one, so the first bytes go out at once, the client reads while the rest is written, and
//! no buffer of the whole size exists. Compressed answers are made the same way on two threads
//! ([`crate::gzip::stream`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use crate::board::{write_named, Board, Column};
use crate::metrics::{write_header, Format};
use crate::support::prefetch;

/// Bytes of text written per piece of a streamed answer: large enough that a piece costs few
/// calls, small enough that the client starts reading early and the pieces in flight stay
/// small.
pub const PIECE: usize = 64 * 1024;

/// Most piece buffers kept for later pieces.
const POOLED_PIECES: usize = 6;

/// Buffers of pieces sent, kept for the next ones: a scrape writes seventy of them, and
/// buffers allocated and freed by every scrape among the probes' own long-lived allocations
/// would leave the allocator's heap ever more fragmented (measured: 6 MiB more resident
/// after a few hundred compressed scrapes).
static PIECES: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// An empty buffer for a piece (with room for [`PIECE`] bytes and a line more).
#[must_use]
pub fn piece() -> Vec<u8> {
    let mut buf = crate::support::lock(&PIECES).pop().unwrap_or_default();
    buf.clear();
    buf.reserve(PIECE + 4096);
    buf
}

/// Gives a buffer back for later pieces.
pub fn give_back(buf: Vec<u8>) {
    let mut pool = crate::support::lock(&PIECES);
    if pool.len() < POOLED_PIECES && buf.capacity() <= 2 * PIECE {
        pool.push(buf);
    }
}

/// A piece to send, whose buffer goes back to the pool once it is sent.
#[must_use]
pub fn pooled(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Pooled(buf))
}

/// A buffer that goes back to the pool when dropped.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

/// Where a writer is: a family (in name order) and a block of probes of that family (see
/// [`crate::board`]). The family's header is written when a writer starts it at its first block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    family: usize,
    block: usize,
}

/// The `/metrics` text of many probes, as one scrape sends it: each family's header once, then
/// every probe's lines of that family, taken from the [`Board`] in blocks. Families are sorted
/// by name; within a family, probes keep their order.
#[derive(Default, Clone)]
pub struct Exposition {
    /// The families with lines, sorted by name.
    columns: Vec<Column>,
}

impl Exposition {
    /// The text of `board` as it is now (its blocks are shared, not copied).
    #[must_use]
    pub fn of(board: &Board) -> Self {
        Self {
            columns: board.columns(),
        }
    }

    /// The text of probes' rendered series, in the order given.
    #[cfg(test)]
    pub(crate) fn of_rendered(rendered: &[crate::metrics::Rendered]) -> Self {
        let board = Board::new(rendered.len());
        for (i, r) in rendered.iter().enumerate() {
            board.set(i, &crate::board::Lines::of(r));
        }
        Self::of(&board)
    }

    /// Bytes of the whole text in `format`.
    #[must_use]
    pub fn len(&self, format: Format) -> usize {
        let mut header = Vec::new();
        self.columns
            .iter()
            .map(|c| {
                header.clear();
                write_header(&mut header, c.family, format);
                header.len() + c.bytes
            })
            .sum()
    }

    /// Whether there is no text.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The position before the first byte.
    #[must_use]
    pub fn start(&self) -> Position {
        Position {
            family: 0,
            block: 0,
        }
    }

    /// The position after the last byte.
    #[must_use]
    pub fn end(&self) -> Position {
        Position {
            family: self.columns.len(),
            block: 0,
        }
    }

    /// A position near the middle of the text, for two writers side by side.
    #[must_use]
    pub fn middle(&self) -> Position {
        let half = self.columns.iter().map(|c| c.bytes).sum::<usize>() / 2;
        let mut before = 0;
        for (family, c) in self.columns.iter().enumerate() {
            if before + c.bytes < half {
                before += c.bytes;
                continue;
            }
            for (block, b) in c.blocks.iter().enumerate() {
                if before >= half {
                    return Position { family, block };
                }
                before += b.len(c.family.name);
            }
            return Position {
                family: family + 1,
                block: 0,
            };
        }
        self.end()
    }

    /// Appends the whole text to `out` in `format` (without OpenMetrics' final `# EOF`).
    pub fn write(&self, out: &mut Vec<u8>, format: Format) {
        let mut at = self.start();
        let end = self.end();
        self.write_until(&mut at, end, out, usize::MAX, format);
    }

    /// Appends the text from `at` on to `out` until `out` holds `limit` bytes or more, or `at`
    /// reaches `stop`; `at` moves to where the writing stopped.
    pub fn write_until(
        &self,
        at: &mut Position,
        stop: Position,
        out: &mut Vec<u8>,
        limit: usize,
        format: Format,
    ) {
        while *at < stop && out.len() < limit {
            let Some(c) = self.columns.get(at.family) else {
                return;
            };
            if at.block == 0 {
                write_header(out, c.family, format);
            }
            let last = if at.family == stop.family {
                stop.block
            } else {
                c.blocks.len()
            };
            let name = c.family.name.as_bytes();
            // At least one block after a header, so that a header is never written twice.
            while at.block < last {
                // The blocks lie all over the heap: the next ones are asked for ahead, or the
                // pass waits on memory at each.
                if let Some(ahead) = c.blocks.get(at.block + 2) {
                    prefetch(ahead.text.as_ptr());
                }
                if let Some(ahead) = c.blocks.get(at.block + 4) {
                    prefetch(Arc::as_ptr(ahead));
                }
                write_named(out, name, &c.blocks[at.block].text);
                at.block += 1;
                if out.len() >= limit {
                    break;
                }
            }
            if at.block == c.blocks.len() {
                *at = Position {
                    family: at.family + 1,
                    block: 0,
                };
            }
        }
    }
}

/// The body of an uncompressed `/metrics` answer: `head` (the process's own families), then the
/// probes' text written piece by piece as the connection asks for it, then `tail` (OpenMetrics'
/// `# EOF`). Its length is known in advance, so the answer has a `Content-Length`.
pub struct TextBody {
    head: Option<Bytes>,
    exposition: Exposition,
    at: Position,
    end: Position,
    tail: Option<&'static [u8]>,
    format: Format,
    left: u64,
}

impl TextBody {
    /// The body of `head`, the text of `exposition` in `format`, and `tail`.
    #[must_use]
    pub fn new(head: Vec<u8>, exposition: Exposition, format: Format, tail: &'static [u8]) -> Self {
        let len = head.len() + exposition.len(format) + tail.len();
        let (at, end) = (exposition.start(), exposition.end());
        Self {
            head: (!head.is_empty()).then(|| Bytes::from(head)),
            exposition,
            at,
            end,
            tail: (!tail.is_empty()).then_some(tail),
            format,
            left: len as u64,
        }
    }
}

impl hyper::body::Body for TextBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let piece = if let Some(head) = this.head.take() {
            head
        } else if this.at < this.end {
            let mut out = piece();
            this.exposition
                .write_until(&mut this.at, this.end, &mut out, PIECE, this.format);
            if this.at >= this.end {
                if let Some(tail) = this.tail.take() {
                    out.extend_from_slice(tail);
                }
            }
            pooled(out)
        } else if let Some(tail) = this.tail.take() {
            Bytes::from_static(tail)
        } else {
            return Poll::Ready(None);
        };
        this.left = this.left.saturating_sub(piece.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.at >= self.end && self.tail.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Family, Rendered, Sample};
    use http_body_util::BodyExt as _;
    use hyper::body::Body as _;
    use std::io::Read as _;

    static UP: Family = Family::gauge("t_up", "Up.");
    static RUNS: Family = Family::counter("t_runs_total", "Runs.");
    static SIZE: Family = Family::gauge("t_size_bytes", "Size.");

    /// Probes of two kinds, many of them, so that the text takes many pieces.
    fn exposition(probes: usize) -> Exposition {
        let mut rendered = Vec::with_capacity(probes);
        for i in 0..probes {
            let mut samples = vec![
                Sample {
                    family: &RUNS,
                    labels: vec![],
                    value: i as f64,
                },
                Sample {
                    family: &UP,
                    labels: vec![("kind", "http".into())],
                    value: 1.0,
                },
            ];
            if i % 3 == 0 {
                // A family whose lines come in two parts.
                samples.push(Sample {
                    family: &SIZE,
                    labels: vec![("path", "a".into())],
                    value: 2.5,
                });
                samples.push(Sample {
                    family: &UP,
                    labels: vec![("kind", "other".into())],
                    value: 0.0,
                });
                samples.push(Sample {
                    family: &SIZE,
                    labels: vec![("path", "b\"q".into())],
                    value: 7.0,
                });
            }
            rendered.push(Rendered::new(&format!("probe-{i}"), &samples));
        }
        Exposition::of_rendered(&rendered)
    }

    /// The whole text, written at once; checked against the `prometheus` crate in
    /// `metrics.rs`.
    fn whole(probes: usize, format: Format) -> Vec<u8> {
        let mut out = b"# head\n".to_vec();
        exposition(probes).write(&mut out, format);
        if format == Format::OpenMetrics {
            out.extend_from_slice(b"# EOF\n");
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_text_is_the_whole_text() {
        for (probes, format) in [
            (0, Format::Text),
            (1, Format::OpenMetrics),
            (20_000, Format::Text),
            (20_000, Format::OpenMetrics),
        ] {
            let want = whole(probes, format);
            let tail: &'static [u8] = if format == Format::OpenMetrics {
                b"# EOF\n"
            } else {
                b""
            };
            let body = TextBody::new(b"# head\n".to_vec(), exposition(probes), format, tail);
            assert_eq!(body.size_hint().exact(), Some(want.len() as u64));
            let got = body.collect().await.unwrap().to_bytes();
            assert_eq!(got.len(), want.len(), "{probes} probes, {format:?}");
            assert!(got == want, "{probes} probes, {format:?}");
            // Each family's header once.
            let text = String::from_utf8(got.to_vec()).unwrap();
            if probes > 3 {
                assert_eq!(text.matches("# TYPE t_up ").count(), 1);
                assert!(text.contains("\nt_size_bytes{probe=\"probe-3\",path=\"b\\\"q\"} 7\n"));
            }

            let gz = crate::gzip::stream(b"# head\n".to_vec(), exposition(probes), format, tail);
            let gz = gz.collect().await.unwrap().to_bytes();
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut unzipped)
                .expect("valid gzip");
            assert!(unzipped == want, "gzip, {probes} probes, {format:?}");
            if probes > 1000 {
                assert!(gz.len() * 4 < want.len());
            }
        }
    }

    /// The time a scrape of ten thousand http-like probes takes to write, without the
    /// connection: a measurement, built only when asked for: `cargo test --release -p
    /// stackmedic-exporter --features measurements --lib write_time -- --nocapture`.
    #[cfg(feature = "measurements")]
    #[test]
    fn write_time() {
        static FAMILIES: [Family; 7] = [
            Family::gauge("stackmedic_http_response_seconds", "a"),
            Family::gauge("stackmedic_http_status_code", "b"),
            Family::gauge("stackmedic_probe_duration_seconds", "c"),
            Family::gauge("stackmedic_probe_interval_seconds", "d"),
            Family::gauge("stackmedic_probe_last_run_timestamp_seconds", "e"),
            Family::counter("stackmedic_probe_runs_total", "f"),
            Family::gauge("stackmedic_probe_success", "g"),
        ];
        let board = Board::new(10_000);
        for i in 0..10_000 {
            let mut b = Rendered::builder(&format!("p{i}"));
            for (j, f) in FAMILIES.iter().enumerate().rev() {
                let kind: &[(&str, &str)] = if j < 2 { &[] } else { &[("kind", "http")] };
                b.series(f, kind, 1_796_554_695.406_344_2 + i as f64);
            }
            board.set(i, &crate::board::Lines::of(&b.finish()));
        }
        let mut best = [f64::MAX; 3];
        let mut bytes = 0;
        for _ in 0..30 {
            let t = std::time::Instant::now();
            let e = Exposition::of(&board);
            let sealed = t.elapsed().as_secs_f64();
            let mut body = TextBody::new(Vec::new(), e, Format::Text, b"");
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut total = 0;
            while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
                total += f.into_data().map_or(0, |d| d.len());
            }
            let all = t.elapsed().as_secs_f64();
            bytes = total;
            best[0] = best[0].min(sealed);
            best[1] = best[1].min(all - sealed);
            best[2] = best[2].min(all);
        }
        println!(
            "{bytes} bytes: snapshot {:.2} ms, pieces {:.2} ms, all {:.2} ms",
            best[0] * 1e3,
            best[1] * 1e3,
            best[2] * 1e3
        );
    }
}
