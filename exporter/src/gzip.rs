//! Gzip for `/metrics`: ten thousand probes make a body of about 4.4 MB, which one core
//! compresses in 10 to 20 ms. The body is cut into pieces compressed side by side, one thread
//! each (as `pigz` does): each piece is a raw deflate stream of its own, ended byte-aligned by a
//! sync flush (the last one by the final block), so that their concatenation is one deflate
//! stream; the CRC-32 of the whole is combined from the pieces'.
//!
//! `/metrics` is compressed while it is written ([`stream`]): two threads each write and
//! compress one half of the text, the first sending its output as it comes, so neither the
//! text nor most of its compressed form is ever held whole.

use std::sync::Arc;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use stackmedic_common::server::ResponseBody;

use crate::exposition::{give_back, piece, pooled, Exposition, Position, PIECE};
use crate::metrics::Format;

/// RFC 1952: magic, deflate, no flags, no time, no extra flags, unknown system.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// Below this many bytes of text the answer is compressed on one thread.
const MIN_SPLIT: usize = 512 * 1024;
/// Compressed bytes the first half gathers before it sends them.
const SEND_AT: usize = 32 * 1024;
/// Room for the compressed second half: at least a mebibyte, so that glibc maps it for this
/// scrape alone and returns it after, instead of leaving a hole in the heap.
const SECOND_HALF: usize = 1 << 20;

/// Deflate's full window of 32 KiB. A window of 4 KiB made answers a little smaller (483
/// against 497 KB with ten thousand probes) and the state smaller, but the compressor slides
/// its hash tables each time the window is full: eight times as often, a third of a compressed
/// scrape's CPU time (measured: 16.3 against 11.4 ms per scrape).
const WINDOW_BITS: u8 = 15;

/// Compressors kept for later answers, one per half: their state (window and hash tables,
/// some hundred kilobytes) allocated and freed by every scrape would fragment the heap.
static COMPRESSORS: std::sync::Mutex<Vec<Compress>> = std::sync::Mutex::new(Vec::new());

/// A compressor at the fastest level, reset, from the pool or new.
fn compressor() -> Compress {
    match crate::support::lock(&COMPRESSORS).pop() {
        Some(mut c) => {
            c.reset();
            c
        }
        None => Compress::new_with_window_bits(Compression::fast(), false, WINDOW_BITS),
    }
}

/// Keeps a compressor for a later answer.
fn keep(c: Compress) {
    let mut pool = crate::support::lock(&COMPRESSORS);
    if pool.len() < 2 {
        pool.push(c);
    }
}

/// Below this size a body is compressed in one piece.
const MIN_PIECE: usize = 512 * 1024;
/// Most pieces compressed at once.
const MAX_PIECES: usize = 4;

/// The gzip form of `body` at the fastest level; `None` if the compressor fails.
#[must_use]
pub fn compress(body: &[u8]) -> Option<Vec<u8>> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let pieces = (body.len() / MIN_PIECE).clamp(1, cores.min(MAX_PIECES));
    let size = body.len().div_ceil(pieces).max(1);
    let parts: Vec<&[u8]> = if body.is_empty() {
        vec![body]
    } else {
        body.chunks(size).collect()
    };
    let last = parts.len() - 1;
    let deflated: Vec<Option<(Vec<u8>, Crc)>> = std::thread::scope(|scope| {
        let helpers: Vec<_> = parts[1..]
            .iter()
            .enumerate()
            .map(|(i, part)| scope.spawn(move || deflate(part, i + 1 == last)))
            .collect();
        let first = deflate(parts[0], last == 0);
        std::iter::once(first)
            .chain(helpers.into_iter().map(|h| h.join().ok().flatten()))
            .collect()
    });
    let mut out = Vec::with_capacity(body.len() / 8 + 64);
    out.extend_from_slice(&HEADER);
    let mut crc = Crc::new();
    for piece in deflated {
        let (bytes, piece_crc) = piece?;
        out.extend_from_slice(&bytes);
        crc.combine(&piece_crc);
    }
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // The length modulo 2^32, as the format says.
    #[allow(clippy::cast_possible_truncation)]
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    Some(out)
}

/// One piece as raw deflate, ended by a sync flush (or, for the last, the final block), with
/// its CRC-32.
fn deflate(data: &[u8], last: bool) -> Option<(Vec<u8>, Crc)> {
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() / 6 + 1024);
    feed(&mut c, data, &mut out, end_flush(last))?;
    let mut crc = Crc::new();
    crc.update(data);
    Some((out, crc))
}

/// How a piece ends: a sync flush, or for the last piece the final block.
fn end_flush(last: bool) -> FlushCompress {
    if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    }
}

/// Compresses all of `data` into `out` (growing it as needed), then flushes as `flush` says.
fn feed(c: &mut Compress, data: &[u8], out: &mut Vec<u8>, flush: FlushCompress) -> Option<()> {
    let start = c.total_in();
    loop {
        let consumed = usize::try_from(c.total_in() - start).ok()?;
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 * 1024);
        }
        let status = c.compress_vec(&data[consumed..], out, flush).ok()?;
        let all_in = usize::try_from(c.total_in() - start).ok()? == data.len();
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return Some(()),
            // Without a final block, the work is done once all input is in and the output
            // did not fill up (a flush may otherwise have more to write).
            Status::Ok | Status::BufError
                if !matches!(flush, FlushCompress::Finish) && all_in && room_left =>
            {
                return Some(())
            }
            _ => {}
        }
    }
}

/// What a half of the text compressed to: its CRC-32 and length (its bytes were sent or are
/// in the `Vec`).
type Half = Option<(Vec<u8>, Crc)>;

/// The gzip-compressed body of `head`, the text of `exposition` in `format` and `tail`, made
/// while it is sent: the first half of the text is written and compressed on one thread and
/// sent as it comes; the second half at the same time on another, sent when the first is
/// done; each half a raw deflate piece as in [`compress`]. A compressor that fails ends the
/// body early (the client sees a truncated stream) and is logged.
#[must_use]
pub fn stream(
    head: Vec<u8>,
    exposition: Exposition,
    format: Format,
    tail: &'static [u8],
) -> ResponseBody {
    let len = exposition.len(format);
    let split = len >= MIN_SPLIT
        && std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) > 1;
    let middle = if split {
        exposition.middle()
    } else {
        exposition.end()
    };
    let exposition = Arc::new(exposition);
    // Room for the whole first half compressed (metrics text compresses well over four to
    // one): its thread never waits on a client that reads slowly or not at all, so no
    // blocking thread is held by one; what it sent waits here until the client reads it or
    // the server closes the connection.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>((len / 4 / SEND_AT).max(16));
    let second = split.then(|| {
        let exposition = exposition.clone();
        let closed = tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(SECOND_HALF);
            let end = exposition.end();
            let crc = deflate_text(&exposition, None, middle, end, tail, format, &mut |o| {
                // Kept until the first half is sent; given up when the client is gone.
                out.extend_from_slice(&o);
                give_back(o);
                !closed.is_closed()
            })?;
            Some((out, crc))
        })
    });
    tokio::spawn(async move {
        if tx.send(Bytes::from_static(&HEADER)).await.is_err() {
            return;
        }
        let first_tx = tx.clone();
        let first = tokio::task::spawn_blocking(move || {
            let start = exposition.start();
            let first_tail = if split { &[][..] } else { tail };
            deflate_text(
                &exposition,
                Some(&head),
                start,
                middle,
                first_tail,
                format,
                &mut |o| first_tx.blocking_send(pooled(o)).is_ok(),
            )
            .map(|crc| (Vec::new(), crc))
        });
        let mut crc = Crc::new();
        let halves: [Result<Half, _>; 2] = [
            first.await,
            match second {
                Some(h) => h.await,
                None => Ok(Some((Vec::new(), Crc::new()))),
            },
        ];
        for half in halves {
            let Ok(Some((bytes, half_crc))) = half else {
                if !tx.is_closed() {
                    tracing::error!("cannot compress the metrics; the answer ends early");
                }
                return;
            };
            crc.combine(&half_crc);
            if !bytes.is_empty() && tx.send(Bytes::from(bytes)).await.is_err() {
                return;
            }
        }
        let mut trailer = Vec::with_capacity(8);
        trailer.extend_from_slice(&crc.sum().to_le_bytes());
        trailer.extend_from_slice(&crc.amount().to_le_bytes());
        let _ = tx.send(Bytes::from(trailer)).await;
    });
    ResponseBody::stream(Channel(rx))
}

/// Writes the text from `from` to `to` (after `head` and before `tail`, when given) piece by
/// piece, compresses it as one raw deflate piece (ended by the final block when `to` is the
/// end, by a sync flush otherwise), and hands the compressed bytes to `emit` as they come;
/// `emit` says whether to go on. The piece's CRC-32, or `None` if it was given up.
fn deflate_text(
    exposition: &Exposition,
    head: Option<&[u8]>,
    from: Position,
    to: Position,
    tail: &[u8],
    format: Format,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Option<Crc> {
    let last = to == exposition.end();
    let mut c = compressor();
    let mut crc = Crc::new();
    let mut text = piece();
    let mut out = piece();
    if let Some(head) = head {
        text.extend_from_slice(head);
    }
    let mut at = from;
    let result = loop {
        exposition.write_until(&mut at, to, &mut text, PIECE, format);
        let done = at >= to;
        if done {
            text.extend_from_slice(tail);
        }
        crc.update(&text);
        let flush = if done {
            end_flush(last)
        } else {
            FlushCompress::None
        };
        if feed(&mut c, &text, &mut out, flush).is_none() {
            break None;
        }
        text.clear();
        if (done || out.len() >= SEND_AT) && !out.is_empty() {
            let full = std::mem::replace(&mut out, piece());
            if !emit(full) {
                break None;
            }
        }
        if done {
            break Some(crc);
        }
    };
    give_back(text);
    give_back(out);
    // A compressor that failed is not used again.
    if result.is_some() {
        keep(c);
    }
    result
}

/// A body of the pieces a channel delivers, until its senders are gone.
struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Channel {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|piece| piece.map(|p| Ok(hyper::body::Frame::data(p))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn pieces_make_one_valid_stream() {
        // Metrics-like text, in one piece and in several.
        let mut text = Vec::new();
        let mut i = 0u64;
        while text.len() < 3 * MIN_PIECE + 12_345 {
            text.extend_from_slice(
                format!(
                    "stackmedic_probe_duration_seconds{{probe=\"p{i}\",kind=\"http\"}} 0.000{}\n",
                    i % 977
                )
                .as_bytes(),
            );
            i += 1;
        }
        for len in [0, 1, 100, MIN_PIECE - 1, MIN_PIECE * 2 + 7, text.len()] {
            let body = &text[..len];
            let gz = compress(body).expect("compressed");
            assert_eq!(gunzip(&gz), body, "{len} bytes");
            if len > 10_000 {
                assert!(gz.len() * 4 < len, "{len} bytes compressed to {}", gz.len());
            }
        }
    }
}
