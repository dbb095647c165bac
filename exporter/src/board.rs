//! The probes' series kept the way `/metrics` sends them.
//!
//! The text format wants every line of a family under its one header, while each probe renders
//! the lines of all its families at once. Gathering ten thousand probes' texts family by family
//! at every scrape means visiting each probe once per family, all over the heap: most of a
//! scrape's time was spent waiting on memory that way (measured). The board keeps the lines
//! family by family instead, in blocks of [`BLOCK`] probes: when a probe's run ends, it replaces
//! its lines in the blocks of the families that changed (a new block each, so a scrape that still
//! sends the old one is not disturbed), and a scrape takes the blocks as they are (a handful of
//! reference counts per family) and copies them out from contiguous memory.
//!
//! Lines are kept without their metric name, which is the family's: a scrape writes it before
//! each line. Ten thousand probes keep about half the bytes of text that way. Each line is kept
//! after its length (a LEB128 number, one byte for lines under 128 bytes), so that a scrape
//! copies lines without searching for their ends.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::metrics::{span, Family, Rendered};

/// Probes per block: a probe's run copies the other probes' lines of its block once per family
/// that changed (about two kilobytes each), and a scrape copies blocks of that size.
pub const BLOCK: usize = 32;

/// The lines of one family of [`BLOCK`] consecutive probes, each without its metric name.
#[derive(Debug, Default)]
pub struct Block {
    /// The lines, probe after probe, each after its length.
    pub(crate) text: Vec<u8>,
    /// Bytes of the lines alone (without their lengths and names).
    plain: u32,
    /// How many lines `text` holds.
    lines: u32,
    /// Where each probe's lines end in `text`; the first begin at 0, the others where the
    /// previous end.
    ends: [u32; BLOCK],
}

impl Block {
    fn span(&self, at: usize) -> Range<usize> {
        let start = if at == 0 { 0 } else { self.ends[at - 1] };
        start as usize..self.ends[at] as usize
    }

    /// This block with probe `at`'s lines replaced by `lines`.
    fn with(&self, at: usize, lines: &[u8]) -> Block {
        let old = self.span(at);
        let (was, now) = (measure(&self.text[old.clone()]), measure(lines));
        let mut text = Vec::with_capacity(self.text.len() - old.len() + lines.len());
        text.extend_from_slice(&self.text[..old.start]);
        text.extend_from_slice(lines);
        text.extend_from_slice(&self.text[old.end..]);
        let mut ends = self.ends;
        for end in &mut ends[at..] {
            *end = u32::try_from(*end as usize - old.len() + lines.len()).unwrap_or(u32::MAX);
        }
        let count = |total: u32, was: usize, now: usize| {
            u32::try_from(total as usize - was + now).unwrap_or(u32::MAX)
        };
        Block {
            text,
            plain: count(self.plain, was.0, now.0),
            lines: count(self.lines, was.1, now.1),
            ends,
        }
    }

    /// Bytes of its lines as sent, the metric name `name` before each.
    pub(crate) fn len(&self, name: &str) -> usize {
        self.plain as usize + self.lines as usize * name.len()
    }
}

/// Appends `line` after its length.
fn push_line(out: &mut Vec<u8>, line: &[u8]) {
    let mut n = line.len();
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(line);
}

/// The lines of `text` (each after its length), one after the other.
fn each_line(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let (&b, tail) = rest.split_first()?;
            rest = tail;
            n |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let (line, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(line)
    })
}

/// Bytes of the lines of `text` alone, and how many there are.
fn measure(text: &[u8]) -> (usize, usize) {
    each_line(text).fold((0, 0), |(bytes, n), l| (bytes + l.len(), n + 1))
}

/// Appends `text`'s lines to `out`, each after the metric name `name`.
pub(crate) fn write_named(out: &mut Vec<u8>, name: &[u8], text: &[u8]) {
    for line in each_line(text) {
        out.extend_from_slice(name);
        out.extend_from_slice(line);
    }
}

/// One family's lines of every probe.
#[derive(Debug, Clone)]
pub struct Column {
    pub(crate) family: &'static Family,
    pub(crate) blocks: Vec<Arc<Block>>,
    /// Bytes of all its blocks, metric names included.
    pub(crate) bytes: usize,
}

/// The lines of one probe, family by family, each without its metric name: each family once,
/// its lines together (a probe may list a family's samples apart, the format may not).
#[derive(Debug, Default)]
pub struct Lines {
    text: Vec<u8>,
    families: Vec<(&'static Family, Range<usize>)>,
}

impl Lines {
    /// The lines of `rendered`.
    #[must_use]
    pub fn of(rendered: &Rendered) -> Lines {
        let mut lines = Lines {
            text: Vec::with_capacity(rendered.text.len()),
            families: Vec::new(),
        };
        lines.fill(rendered);
        lines
    }

    /// Replaces these lines with those of `rendered`, in the same memory.
    pub fn fill(&mut self, rendered: &Rendered) {
        self.text.clear();
        self.families.clear();
        let text = rendered.text.as_bytes();
        for (i, (family, _)) in rendered.parts.iter().enumerate() {
            if self.families.iter().any(|(f, _)| std::ptr::eq(*f, *family)) {
                continue;
            }
            let start = self.text.len();
            for (f, range) in &rendered.parts[i..] {
                if std::ptr::eq(*f, *family) {
                    push_line(&mut self.text, &text[span(range)]);
                }
            }
            self.families.push((family, start..self.text.len()));
        }
    }

    fn of_family(&self, family: &'static Family) -> &[u8] {
        self.families
            .iter()
            .find(|(f, _)| std::ptr::eq(*f, family))
            .map_or(&[][..], |(_, range)| &self.text[range.clone()])
    }
}

/// Every probe's lines of every family, probes numbered from 0 in configuration order.
#[derive(Debug)]
pub struct Board {
    probes: usize,
    /// The families any probe has had, sorted by name.
    columns: Mutex<Vec<Column>>,
}

impl Board {
    /// A board for `probes` probes, none with lines yet.
    #[must_use]
    pub fn new(probes: usize) -> Board {
        Board {
            probes,
            columns: Mutex::new(Vec::new()),
        }
    }

    /// Replaces probe `at`'s lines with `lines` (a family it does not have any more loses its
    /// lines). Probes outside the board are ignored.
    pub fn set(&self, at: usize, lines: &Lines) {
        if at >= self.probes {
            return;
        }
        let (block, within) = (at / BLOCK, at % BLOCK);
        let mut columns = crate::support::lock(&self.columns);
        for (family, _) in &lines.families {
            if !columns.iter().any(|c| std::ptr::eq(c.family, *family)) {
                let empty = Arc::new(Block::default());
                let column = Column {
                    family,
                    blocks: vec![empty; self.probes.div_ceil(BLOCK)],
                    bytes: 0,
                };
                let i = columns.partition_point(|c| c.family.name < family.name);
                columns.insert(i, column);
            }
        }
        for column in columns.iter_mut() {
            let new = lines.of_family(column.family);
            let b = &mut column.blocks[block];
            let old = &b.text[b.span(within)];
            if old == new {
                continue;
            }
            let name = column.family.name.len();
            let sent = |(bytes, lines): (usize, usize)| bytes + lines * name;
            column.bytes = column.bytes - sent(measure(old)) + sent(measure(new));
            *b = Arc::new(b.with(within, new));
        }
    }

    /// Probe `at`'s lines.
    #[must_use]
    pub fn get(&self, at: usize) -> Lines {
        let mut lines = Lines::default();
        if at >= self.probes {
            return lines;
        }
        let (block, within) = (at / BLOCK, at % BLOCK);
        for column in crate::support::lock(&self.columns).iter() {
            let b = &column.blocks[block];
            let text = &b.text[b.span(within)];
            if !text.is_empty() {
                let start = lines.text.len();
                lines.text.extend_from_slice(text);
                lines
                    .families
                    .push((column.family, start..lines.text.len()));
            }
        }
        lines
    }

    /// The families with lines, sorted by name, as they are now: their blocks are shared, not
    /// copied, and later runs do not change them.
    #[must_use]
    pub fn columns(&self) -> Vec<Column> {
        crate::support::lock(&self.columns)
            .iter()
            .filter(|c| c.bytes > 0)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Sample;

    static A: Family = Family::gauge("t_a", "A.");
    static B: Family = Family::gauge("t_b", "B.");

    fn lines(probe: &str, samples: &[(&'static Family, f64)]) -> Lines {
        let samples: Vec<Sample> = samples
            .iter()
            .map(|(family, value)| Sample {
                family,
                labels: vec![],
                value: *value,
            })
            .collect();
        Lines::of(&Rendered::new(probe, &samples))
    }

    fn text(board: &Board) -> String {
        let mut out = String::new();
        for c in board.columns() {
            out.push_str(&format!("[{}]", c.family.name));
            let mut text = Vec::new();
            for b in &c.blocks {
                let before = text.len();
                write_named(&mut text, c.family.name.as_bytes(), &b.text);
                assert_eq!(text.len() - before, b.len(c.family.name));
            }
            assert_eq!(text.len(), c.bytes);
            out.push_str(std::str::from_utf8(&text).unwrap());
        }
        out
    }

    #[test]
    fn lines_are_kept_by_family_in_probe_order_across_blocks() {
        let n = BLOCK * 2 + 3;
        let board = Board::new(n);
        for i in (0..n).rev() {
            board.set(i, &lines(&format!("p{i}"), &[(&B, 1.0), (&A, i as f64)]));
        }
        let t = text(&board);
        assert!(t.starts_with("[t_a]t_a{probe=\"p0\"} 0\nt_a{probe=\"p1\"} 1\n"));
        assert!(t.contains(&format!("t_a{{probe=\"p{}\"}} {}\n[t_b]", n - 1, n - 1)));
        assert_eq!(t.matches("t_b{").count(), n);

        // A probe that loses a family loses its lines there; one that changes a value
        // changes only its own line; one outside the board changes nothing.
        board.set(BLOCK + 1, &lines("q", &[(&A, 9.0)]));
        board.set(n, &lines("x", &[(&A, 9.0)]));
        let t = text(&board);
        assert_eq!(t.matches("t_b{").count(), n - 1);
        assert!(t.contains(&format!(
            "t_a{{probe=\"p{}\"}} {}\nt_a{{probe=\"q\"}} 9\nt_a{{probe=\"p{}\"}}",
            BLOCK,
            BLOCK,
            BLOCK + 2
        )));
        assert!(!t.contains("\"x\""));

        // What a probe has, read back, is what it set.
        let back = board.get(BLOCK + 1);
        assert_eq!(
            each_line(&back.text).collect::<Vec<_>>(),
            [b"{probe=\"q\"} 9\n"]
        );
        let moved = Board::new(1);
        moved.set(0, &back);
        assert_eq!(text(&moved), "[t_a]t_a{probe=\"q\"} 9\n");

        // A family nobody has any more is not listed.
        let one = Board::new(1);
        one.set(0, &lines("p", &[(&B, 1.0)]));
        one.set(0, &lines("p", &[(&A, 1.0)]));
        assert_eq!(text(&one), "[t_a]t_a{probe=\"p\"} 1\n");
    }

    #[test]
    fn lines_of_any_length_are_kept_whole() {
        let mut text = Vec::new();
        let long: Vec<Vec<u8>> = [0, 1, 127, 128, 300, 16_383, 16_384, 70_000]
            .iter()
            .map(|&n| vec![b'x'; n])
            .collect();
        for l in &long {
            push_line(&mut text, l);
        }
        assert_eq!(each_line(&text).collect::<Vec<_>>(), long);
        assert_eq!(
            measure(&text),
            (long.iter().map(Vec::len).sum::<usize>(), long.len())
        );
    }

    #[test]
    fn a_family_listed_apart_comes_together() {
        let board = Board::new(1);
        board.set(0, &lines("p", &[(&A, 1.0), (&B, 2.0), (&A, 3.0)]));
        assert_eq!(
            text(&board),
            "[t_a]t_a{probe=\"p\"} 1\nt_a{probe=\"p\"} 3\n[t_b]t_b{probe=\"p\"} 2\n"
        );
    }

    #[test]
    fn a_scrape_keeps_the_blocks_it_took() {
        let board = Board::new(2);
        board.set(0, &lines("p", &[(&A, 1.0)]));
        let taken = board.columns();
        board.set(0, &lines("p", &[(&A, 2.0)]));
        let text = |b: &Block| each_line(&b.text).flatten().copied().collect::<Vec<u8>>();
        assert_eq!(text(&taken[0].blocks[0]), b"{probe=\"p\"} 1\n");
        assert_eq!(text(&board.columns()[0].blocks[0]), b"{probe=\"p\"} 2\n");
    }
}
