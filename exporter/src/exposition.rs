//! The `/metrics` text of every probe, written piece by piece while it is sent.
//!
//! A scrape takes every probe's latest [`Rendered`] series (a snapshot: the texts are shared,
//! not copied) and writes each family's header once, then every probe's lines of that family.
//! Ten thousand probes make 4.4 MB of text; it is not built in one buffer and sent after:
//! [`TextBody`] writes the next piece of about [`PIECE`] bytes each time the connection asks
//! for one, so the first bytes go out at once, the client reads while the rest is written, and
//! no buffer of the whole size exists. Compressed answers are made the same way on two threads
//! ([`crate::gzip::stream`]).

use std::convert::Infallible;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use crate::metrics::{span, write_header, Family, Format, Rendered};
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

/// Where a writer is: a family (in name order) and a probe (in the order probes were added).
/// The family's header is written when a writer starts it at its first probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    family: usize,
    probe: usize,
}

/// The `/metrics` text of many probes: each family's header once, then every probe's lines of
/// that family. Families are sorted by name; within a family, probes keep the order in which
/// they were added.
#[derive(Default)]
pub struct Exposition {
    probes: Vec<Arc<Rendered>>,
    /// The families present, sorted by name, with the bytes of their lines (names included);
    /// filled by [`Exposition::seal`].
    families: Vec<(&'static Family, usize)>,
}

impl Exposition {
    /// An exposition with room for `probes` probes.
    #[must_use]
    pub fn with_capacity(probes: usize) -> Self {
        Self {
            probes: Vec::with_capacity(probes),
            families: Vec::new(),
        }
    }

    /// Adds a probe's rendered series.
    pub fn add(&mut self, rendered: Arc<Rendered>) {
        self.probes.push(rendered);
        self.families.clear();
    }

    /// Finds the families and their sizes; called once all probes are added (the writers call
    /// it if it was not).
    pub fn seal(&mut self) {
        if !self.families.is_empty() || self.probes.is_empty() {
            return;
        }
        // A handful of families, each a `static` told apart by address; linear scans over
        // them cost less than hashing thousands of parts. Probes of one kind have the same
        // families in the same order: the previous probe's indexes are used again.
        let mut families: Vec<(&'static Family, usize)> = Vec::new();
        let mut previous: &[(&'static Family, Range<u32>)] = &[];
        let mut indexes: Vec<usize> = Vec::new();
        for (n, r) in self.probes.iter().enumerate() {
            self.prefetch(n);
            if !same_families(&r.parts, previous) {
                indexes.clear();
                for (family, _) in &r.parts {
                    let i = match families.iter().position(|(f, _)| std::ptr::eq(*f, *family)) {
                        Some(i) => i,
                        None => {
                            families.push((family, 0));
                            families.len() - 1
                        }
                    };
                    indexes.push(i);
                }
                previous = &r.parts;
            }
            for ((family, range), i) in r.parts.iter().zip(&indexes) {
                families[*i].1 += (range.end - range.start) as usize + family.name.len();
            }
        }
        families.sort_unstable_by_key(|(f, _)| f.name);
        self.families = families;
    }

    /// Bytes of the whole text in `format`.
    #[must_use]
    pub fn len(&mut self, format: Format) -> usize {
        self.seal();
        let mut header = Vec::new();
        self.families
            .iter()
            .map(|(family, size)| {
                header.clear();
                write_header(&mut header, family, format);
                header.len() + size
            })
            .sum()
    }

    /// Whether there is no text.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// The position before the first byte.
    #[must_use]
    pub fn start(&self) -> Position {
        Position {
            family: 0,
            probe: 0,
        }
    }

    /// The position after the last byte.
    #[must_use]
    pub fn end(&self) -> Position {
        Position {
            family: self.families.len(),
            probe: 0,
        }
    }

    /// A position near the middle of the text, for two writers side by side.
    #[must_use]
    pub fn middle(&mut self) -> Position {
        self.seal();
        let half = self.families.iter().map(|(_, size)| size).sum::<usize>() / 2;
        let mut before = 0;
        for (i, (_, size)) in self.families.iter().enumerate() {
            if before + size >= half {
                // Within the family, probes have about the same size.
                let into = (half - before) as f64 / (*size).max(1) as f64;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let probe = ((self.probes.len() as f64 * into) as usize).min(self.probes.len());
                return if probe == self.probes.len() {
                    Position {
                        family: i + 1,
                        probe: 0,
                    }
                } else {
                    Position { family: i, probe }
                };
            }
            before += size;
        }
        self.end()
    }

    /// Appends the whole text to `out` in `format` (without OpenMetrics' final `# EOF`).
    pub fn write(&mut self, out: &mut Vec<u8>, format: Format) {
        self.seal();
        let mut at = self.start();
        let end = self.end();
        self.write_until(&mut at, end, out, usize::MAX, format);
    }

    /// Appends the text from `at` on to `out` until `out` holds `limit` bytes or more, or `at`
    /// reaches `stop`; `at` moves to where the writing stopped. Call [`Exposition::seal`]
    /// first.
    pub fn write_until(
        &self,
        at: &mut Position,
        stop: Position,
        out: &mut Vec<u8>,
        limit: usize,
        format: Format,
    ) {
        let probes = self.probes.len();
        // Probes of one kind list their families in the same order: the position of the
        // family in the previous probe's parts is tried first.
        let mut hint = 0;
        while *at < stop && out.len() < limit {
            let Some((family, _)) = self.families.get(at.family) else {
                return;
            };
            let family: &'static Family = family;
            if at.probe == 0 {
                write_header(out, family, format);
            }
            let last = if at.family == stop.family {
                stop.probe
            } else {
                probes
            };
            let name = family.name.as_bytes();
            // At least one probe after a header, so that a header is never written twice.
            while at.probe < last {
                self.prefetch(at.probe);
                let r = &self.probes[at.probe];
                let text = r.text.as_bytes();
                if r.one_part_each {
                    let i = match r.parts.get(hint) {
                        Some((f, _)) if std::ptr::eq(*f, family) => Some(hint),
                        _ => r.parts.iter().position(|(f, _)| std::ptr::eq(*f, family)),
                    };
                    if let Some(i) = i {
                        hint = i;
                        write_lines(out, name, &text[span(&r.parts[i].1)]);
                    }
                } else {
                    for (f, range) in &r.parts {
                        if std::ptr::eq(*f, family) {
                            write_lines(out, name, &text[span(range)]);
                        }
                    }
                }
                at.probe += 1;
                if out.len() >= limit {
                    break;
                }
            }
            if at.probe == probes {
                *at = Position {
                    family: at.family + 1,
                    probe: 0,
                };
            }
        }
    }
}

impl Exposition {
    /// Asks the CPU to load what the probes after the `at`th will need: their texts lie all
    /// over the heap and each pass over ten thousand of them otherwise waits on memory for
    /// each (the largest part of a scrape's time, measured). Two steps ahead: the series of
    /// the probe [`NEAR`] on (whose own struct was asked for earlier), the struct [`FAR`] on.
    #[inline]
    fn prefetch(&self, at: usize) {
        if let Some(r) = self.probes.get(at + FAR) {
            prefetch(Arc::as_ptr(r));
        }
        if let Some(r) = self.probes.get(at + NEAR) {
            prefetch(r.parts.as_ptr());
            prefetch(r.text.as_ptr());
        }
    }
}

/// How many probes ahead a pass asks for a probe's series, and for its struct.
const NEAR: usize = 6;
const FAR: usize = 12;

/// Appends a line: its metric name, then the rest as kept.
fn write_lines(out: &mut Vec<u8>, name: &[u8], part: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(part);
}

fn same_families(a: &[(&'static Family, Range<u32>)], b: &[(&'static Family, Range<u32>)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((f, _), (g, _))| std::ptr::eq(*f, *g))
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
    pub fn new(
        head: Vec<u8>,
        mut exposition: Exposition,
        format: Format,
        tail: &'static [u8],
    ) -> Self {
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
    use crate::metrics::Sample;
    use http_body_util::BodyExt as _;
    use hyper::body::Body as _;
    use std::io::Read as _;

    static UP: Family = Family::gauge("t_up", "Up.");
    static RUNS: Family = Family::counter("t_runs_total", "Runs.");
    static SIZE: Family = Family::gauge("t_size_bytes", "Size.");

    /// Probes of two kinds, many of them, so that the text takes many pieces.
    fn exposition(probes: usize) -> Exposition {
        let mut e = Exposition::with_capacity(probes);
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
            e.add(Arc::new(Rendered::new(&format!("probe-{i}"), &samples)));
        }
        e
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
        let rendered: Vec<Arc<Rendered>> = (0..10_000)
            .map(|i| {
                let mut b = Rendered::builder(&format!("p{i}"));
                for (j, f) in FAMILIES.iter().enumerate().rev() {
                    let kind: &[(&str, &str)] = if j < 2 { &[] } else { &[("kind", "http")] };
                    b.series(f, kind, 1_796_554_695.406_344_2 + i as f64);
                }
                Arc::new(b.finish())
            })
            .collect();
        let mut best = [f64::MAX; 3];
        let mut bytes = 0;
        for _ in 0..30 {
            let t = std::time::Instant::now();
            let mut e = Exposition::with_capacity(rendered.len());
            for r in &rendered {
                e.add(r.clone());
            }
            e.seal();
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
            "{bytes} bytes: snapshot and seal {:.2} ms, pieces {:.2} ms, all {:.2} ms",
            best[0] * 1e3,
            best[1] * 1e3,
            best[2] * 1e3
        );
    }
}
