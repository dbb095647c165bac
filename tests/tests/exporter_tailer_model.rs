//! A model-based test of the access-log tailer (`stackmedic_exporter::probe::tail::Tailer`):
//! random sequences of what happens to a log file — appends of whole and partial lines, rename
//! and reopen (with logrotate's `create` in between or not), deletion, copytruncate with the
//! file growing past the old position before the next poll, a file that appears only after the
//! first poll — interleaved with polls under random byte budgets. Each step is done on real
//! files in a temporary folder and to a small in-memory reference model of the tailer's
//! contract; after every step the lines the real tailer delivered, its counts by
//! `X-Status-Path` class and its rotation counts must equal the model's.
//!
//! The model is written from the contract in the tailer's documentation, not from its code: it
//! knows files as objects and sees every change, where the tailer sees only paths, handles,
//! sizes and first bytes.
//!
//! `STACKMEDIC_TAILER_SEQUENCES` sets the number of sequences (300 by default; the
//! `scripts/tailer-model.sh` run uses thousands), `STACKMEDIC_TAILER_FIRST` the number of the first sequence. A
//! failure names the sequence number and the steps that led to it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;

use stackmedic_exporter::probe::tail::{StartAt, Tailer, MAX_ROTATED, ROTATED_IDLE_POLLS};

/// Line prefixes: each file, and each file after a truncation, writes its lines with the next
/// of these, so that a truncated file that grew again never has its old first bytes (the case
/// the tailer's fingerprint cannot tell apart, documented as such).
const GENERATIONS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

const VALUES: [&str; 5] = ["api", "legacy", "v3", "-", ""];

/// A small xorshift generator: deterministic per start value, no dependency.
struct Rng(u64);

impl Rng {
    fn new(start: u64) -> Self {
        Self(start.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A file as the model knows it.
struct ModelFile {
    content: Vec<u8>,
    /// The prefix of the lines written to it now.
    generation: u8,
    /// Truncations so far.
    truncations: u64,
}

/// The files, the path, and the writer (a web server) appending to one of them.
struct World {
    dir: PathBuf,
    path: PathBuf,
    files: Vec<ModelFile>,
    at_path: Option<usize>,
    writer: Option<(usize, File)>,
    /// The rest of the line the writer has begun.
    pending: Vec<u8>,
    seq: u64,
    generations: usize,
    names: usize,
}

impl World {
    /// No file yet; the log will be `access.log` in `dir`.
    fn new(dir: &std::path::Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            path: dir.join("access.log"),
            files: Vec::new(),
            at_path: None,
            writer: None,
            pending: Vec::new(),
            seq: 0,
            generations: 0,
            names: 0,
        }
    }

    fn new_generation(&mut self) -> u8 {
        let g = GENERATIONS[self.generations % GENERATIONS.len()];
        self.generations += 1;
        g
    }

    fn line(&mut self, rng: &mut Rng, generation: u8) -> Vec<u8> {
        self.seq += 1;
        let mut l = vec![generation];
        if rng.chance(10) {
            l.extend_from_slice(format!("{:06} garbage without the field\n", self.seq).as_bytes());
        } else {
            let v = VALUES[rng.below(VALUES.len())];
            l.extend_from_slice(
                format!(
                    "{:06} \"GET /status/summary\" \"curl/8\" xsp=\"{v}\"\n",
                    self.seq
                )
                .as_bytes(),
            );
        }
        l
    }

    /// Writes bytes through the writer's handle, to the real file and the model.
    fn write(&mut self, bytes: &[u8]) {
        let Some((id, file)) = &mut self.writer else {
            return;
        };
        file.write_all(bytes).expect("append");
        self.files[*id].content.extend_from_slice(bytes);
    }

    fn finish_line(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        self.write(&rest);
    }

    /// Creates an empty file at the path.
    fn create(&mut self) {
        File::create(&self.path).expect("create the log");
        let generation = self.new_generation();
        self.files.push(ModelFile {
            content: Vec::new(),
            generation,
            truncations: 0,
        });
        self.at_path = Some(self.files.len() - 1);
    }

    fn aside(&mut self, what: &str) -> PathBuf {
        self.names += 1;
        self.dir.join(format!("access.log.{what}.{}", self.names))
    }
}

/// One step of a sequence.
#[derive(Debug, Clone, Copy)]
enum Step {
    Append(usize),
    AppendPart,
    Rename,
    Create,
    Reopen,
    Delete,
    CopyTruncate { regrow: bool },
    Poll(u64),
}

fn pick(rng: &mut Rng) -> Step {
    match rng.below(100) {
        0..=24 => Step::Append(1 + rng.below(4)),
        25..=34 => Step::AppendPart,
        35..=39 => Step::Rename,
        40..=42 => Step::Create,
        43..=48 => Step::Reopen,
        49..=50 => Step::Delete,
        51..=55 => Step::CopyTruncate {
            regrow: rng.chance(70),
        },
        _ => Step::Poll(match rng.below(6) {
            0 => 1 + rng.below(20) as u64,
            1 => 20 + rng.below(100) as u64,
            2 => 100 + rng.below(400) as u64,
            3 => 4096,
            _ => u64::MAX,
        }),
    }
}

/// Does a step to the world; returns whether it was possible.
fn apply(world: &mut World, rng: &mut Rng, step: Step) -> bool {
    match step {
        Step::Append(n) => {
            let Some((id, _)) = &world.writer else {
                return false;
            };
            let generation = world.files[*id].generation;
            world.finish_line();
            for _ in 0..n {
                let l = world.line(rng, generation);
                world.write(&l);
            }
        }
        Step::AppendPart => {
            let Some((id, _)) = &world.writer else {
                return false;
            };
            if world.pending.is_empty() {
                let generation = world.files[*id].generation;
                let l = world.line(rng, generation);
                let cut = 1 + rng.below(l.len() - 1);
                world.write(&l[..cut]);
                world.pending = l[cut..].to_vec();
            } else {
                let cut = 1 + rng.below(world.pending.len());
                let part: Vec<u8> = world.pending.drain(..cut).collect();
                world.write(&part);
            }
        }
        Step::Rename => {
            if world.at_path.is_none() {
                return false;
            }
            let to = world.aside("renamed");
            std::fs::rename(&world.path, to).expect("rename");
            world.at_path = None;
        }
        Step::Create => {
            if world.at_path.is_some() || world.generations >= GENERATIONS.len() {
                return false;
            }
            world.create();
        }
        Step::Reopen => {
            // A server completes the line it is writing before it reopens its log.
            world.finish_line();
            if world.at_path.is_none() {
                if world.generations >= GENERATIONS.len() {
                    return false;
                }
                world.create();
            }
            let id = world.at_path.expect("a file at the path");
            let f = OpenOptions::new()
                .append(true)
                .open(&world.path)
                .expect("reopen");
            world.writer = Some((id, f));
        }
        Step::Delete => {
            if world.at_path.is_none() {
                return false;
            }
            std::fs::remove_file(&world.path).expect("delete");
            world.at_path = None;
        }
        Step::CopyTruncate { regrow } => {
            let (Some(id), Some((w, _))) = (world.at_path, &world.writer) else {
                return false;
            };
            if *w != id || world.generations >= GENERATIONS.len() {
                return false;
            }
            world.finish_line();
            let copy = world.aside("copy");
            std::fs::copy(&world.path, copy).expect("copy");
            let old_len = world.files[id].content.len();
            OpenOptions::new()
                .write(true)
                .open(&world.path)
                .and_then(|f| f.set_len(0))
                .expect("truncate");
            let generation = world.new_generation();
            let f = &mut world.files[id];
            f.content.clear();
            f.generation = generation;
            f.truncations += 1;
            if regrow {
                // Grow past where the file was before the next poll.
                while world.files[id].content.len() <= old_len {
                    let l = world.line(rng, generation);
                    world.write(&l);
                }
            }
        }
        Step::Poll(_) => {}
    }
    true
}

/// The reference model of the tailer's contract.
struct Model {
    start_at: StartAt,
    looked: bool,
    current: Option<Track>,
    rotated: VecDeque<Track>,
}

struct Track {
    file: usize,
    offset: usize,
    partial: Vec<u8>,
    idle: u32,
    truncations_seen: u64,
}

impl Track {
    fn new(world: &World, file: usize, offset: usize) -> Self {
        Self {
            file,
            offset,
            partial: Vec::new(),
            idle: 0,
            truncations_seen: world.files[file].truncations,
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    lines: Vec<Vec<u8>>,
    renamed: u64,
    truncated: u64,
}

impl Model {
    fn new(start_at: StartAt) -> Self {
        Self {
            start_at,
            looked: false,
            current: None,
            rotated: VecDeque::new(),
        }
    }

    fn poll(&mut self, world: &World, mut budget: u64) -> Seen {
        let mut seen = Seen::default();
        let first = !self.looked;
        self.looked = true;
        match (&self.current, world.at_path) {
            (None, Some(f)) => {
                let offset = if first && self.start_at == StartAt::End {
                    world.files[f].content.len()
                } else {
                    0
                };
                self.current = Some(Track::new(world, f, offset));
            }
            (Some(c), Some(f)) if c.file != f => {
                let old = self.current.replace(Track::new(world, f, 0));
                self.rotated.extend(old);
                seen.renamed += 1;
            }
            _ => {}
        }
        for t in self.rotated.iter_mut().chain(self.current.as_mut()) {
            let file = &world.files[t.file];
            // A file that was truncated is read again from its start, unless nothing of it
            // had been read (then there is nothing to notice).
            if file.truncations != t.truncations_seen {
                t.truncations_seen = file.truncations;
                if t.offset > 0 {
                    t.offset = 0;
                    t.partial.clear();
                    seen.truncated += 1;
                }
            }
            let available = file.content.len().saturating_sub(t.offset);
            let n = available.min(usize::try_from(budget).unwrap_or(usize::MAX));
            let bytes = &file.content[t.offset..t.offset + n];
            t.offset += n;
            budget -= n as u64;
            for b in bytes {
                if *b == b'\n' {
                    seen.lines.push(std::mem::take(&mut t.partial));
                } else {
                    t.partial.push(*b);
                }
            }
            let at_end = t.offset >= file.content.len();
            t.idle = if at_end && n == 0 { t.idle + 1 } else { 0 };
        }
        let mut kept = VecDeque::new();
        while let Some(t) = self.rotated.pop_front() {
            let over_cap = self.rotated.len() + kept.len() >= MAX_ROTATED;
            if t.idle >= ROTATED_IDLE_POLLS || over_cap {
                if !t.partial.is_empty() {
                    seen.lines.push(t.partial);
                }
            } else {
                kept.push_back(t);
            }
        }
        self.rotated = kept;
        seen
    }
}

/// Counts by class as the access-log probe's default regex sees them: api, legacy, other,
/// missing, and lines without the field.
fn classify(line: &[u8]) -> usize {
    let text = String::from_utf8_lossy(line);
    let Some(start) = text.find("xsp=\"") else {
        return 4;
    };
    let rest = &text[start + 5..];
    let Some(end) = rest.find('"') else {
        return 4;
    };
    match &rest[..end] {
        "api" => 0,
        "legacy" => 1,
        "" | "-" => 3,
        _ => 2,
    }
}

fn run_sequence(start: u64) {
    let mut rng = Rng::new(start);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut world = World::new(dir.path());
    // Most sequences begin with a log that has history; some with no log at all yet.
    if rng.chance(75) {
        apply(&mut world, &mut rng, Step::Reopen);
        let n = rng.below(6);
        apply(&mut world, &mut rng, Step::Append(n));
    }
    let start_at = if rng.chance(50) {
        StartAt::End
    } else {
        StartAt::Beginning
    };
    let mut tailer = Tailer::new(&world.path, start_at);
    let mut model = Model::new(start_at);
    let mut counts = ([0u64; 5], [0u64; 5]);
    let mut rotations = ((0u64, 0u64), (0u64, 0u64));
    let mut log: Vec<String> = vec![format!("start_at {start_at:?}")];
    let steps = 20 + rng.below(60);
    for i in 0..steps {
        // Every sequence ends with enough unlimited polls to drain everything.
        let step = if i + 4 >= steps {
            Step::Poll(u64::MAX)
        } else {
            pick(&mut rng)
        };
        if !apply(&mut world, &mut rng, step) {
            continue;
        }
        log.push(format!("{step:?}"));
        let (real, expected) = match step {
            Step::Poll(budget) => {
                let mut lines = Vec::new();
                let report = tailer
                    .poll(budget, &mut |l| lines.push(l.to_vec()))
                    .unwrap_or_else(|e| panic!("sequence {start}: poll failed: {e}"));
                let real = Seen {
                    lines,
                    renamed: report.renamed,
                    truncated: report.truncated,
                };
                (real, model.poll(&world, budget))
            }
            _ => (Seen::default(), Seen::default()),
        };
        for l in &real.lines {
            counts.0[classify(l)] += 1;
        }
        for l in &expected.lines {
            counts.1[classify(l)] += 1;
        }
        rotations.0 .0 += real.renamed;
        rotations.0 .1 += real.truncated;
        rotations.1 .0 += expected.renamed;
        rotations.1 .1 += expected.truncated;
        if real != expected || counts.0 != counts.1 || rotations.0 != rotations.1 {
            let show = |s: &Seen| {
                s.lines
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect::<Vec<_>>()
            };
            let recent: Vec<&String> = log.iter().rev().take(40).rev().collect();
            panic!(
                "sequence {start}, step {i} ({step:?}): the tailer and the model differ\n\
                 tailer: {:?} renamed {} truncated {}\n model: {:?} renamed {} truncated {}\n\
                 counts (api, legacy, other, missing, unmatched): tailer {:?}, model {:?}\n\
                 last steps: {recent:?}",
                show(&real),
                real.renamed,
                real.truncated,
                show(&expected),
                expected.renamed,
                expected.truncated,
                counts.0,
                counts.1
            );
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn the_tailer_agrees_with_its_model_on_random_rotation_sequences() {
    let n = env_number("STACKMEDIC_TAILER_SEQUENCES", 300);
    let first = env_number("STACKMEDIC_TAILER_FIRST", 1);
    for start in first..first + n {
        run_sequence(start);
    }
    eprintln!("{n} sequences from number {first}: the tailer agreed with the model");
}

#[test]
fn the_model_sees_what_a_careful_reader_would() {
    // The model itself, on a fixed story: without budgets, and with a poll between any two
    // changes of the file at the path, it delivers every complete line exactly once, and the
    // only lines lost are those truncated away before a poll.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new(7);
    let mut world = World::new(dir.path());
    let mut model = Model::new(StartAt::Beginning);
    let mut delivered = 0;
    let story = [
        Step::Poll(u64::MAX),
        Step::Reopen,
        Step::Append(3),
        Step::Poll(u64::MAX),
        Step::Rename,
        Step::Append(2),
        Step::Poll(u64::MAX),
        Step::Reopen,
        Step::Append(1),
        Step::Poll(u64::MAX),
        Step::Poll(u64::MAX),
        Step::Poll(u64::MAX),
        Step::CopyTruncate { regrow: true },
        Step::Poll(u64::MAX),
    ];
    for step in story {
        assert!(apply(&mut world, &mut rng, step), "{step:?}");
        if let Step::Poll(b) = step {
            delivered += model.poll(&world, b).lines.len();
        }
    }
    // 3 + 2 + 1 lines, then the regrowth after the truncation.
    let regrown = world.files[1]
        .content
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    assert!(regrown >= 1);
    assert_eq!(delivered, 6 + regrown);
    assert_eq!(world.seq as usize, 6 + regrown);
}
