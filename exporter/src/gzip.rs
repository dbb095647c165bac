//! Gzip for `/metrics`: ten thousand probes make a body of about 4.4 MB, which one core
//! compresses in 10 to 20 ms. The body is cut into pieces compressed side by side, one thread
//! each (as `pigz` does): each piece is a raw deflate stream of its own, ended byte-aligned by a
//! sync flush (the last one by the final block), so that their concatenation is one deflate
//! stream; the CRC-32 of the whole is combined from the pieces'.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

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
    // RFC 1952: magic, deflate, no flags, no time, no extra flags, unknown system.
    let mut out = Vec::with_capacity(body.len() / 8 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
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
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = usize::try_from(c.total_in()).ok()?;
        let status = c.compress_vec(&data[consumed..], &mut out, flush).ok()?;
        let all_in = usize::try_from(c.total_in()).ok()? == data.len();
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            // A flush is complete once all input is in and the output did not fill up.
            Status::Ok | Status::BufError if !last && all_in && room_left => break,
            _ => out.reserve(64 * 1024),
        }
    }
    let mut crc = Crc::new();
    crc.update(data);
    Some((out, crc))
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
