//! A model-based test of the access-log tailer (`stackmedic_exporter::probe::tail::Tailer`):
//! random sequences of what happens to a log file — appends of whole and partial lines, rename
//! and reopen (with logrotate's `create` in between or not, so a writer may keep writing the
//! renamed file as Caddy does), deletion of the log or of a rotated file, copytruncate with the
//! file growing past the old position before the next poll, a file that appears only after the
//! first poll, backlogs of several rotations between two polls, and hours going by — interleaved
//! with polls under random byte budgets. Each step is done on real files in a temporary folder
//! and to a small in-memory reference model of the tailer's contract; after every step the
//! lines the real tailer delivered, its counts by `X-Status-Path` class, its rotation, found
//! and skipped counts and the rotated files it follows must equal the model's.
//!
//! The model is written from the contract in the tailer's documentation, not from its code: it
//! knows files as objects and sees every change, where the tailer sees only paths, handles,
//! sizes, first bytes and modification times. Time is the test's own: a step takes a second, a
//! wait hours; each file's modification time is set to the time of its last write.
//!
//! `STACKMEDIC_TAILER_SEQUENCES` sets the number of sequences (300 by default; the
//! `scripts/tailer-model.sh` run uses thousands), `STACKMEDIC_TAILER_FIRST` the number of the first sequence. A
//! failure names the sequence number and the steps that led to it.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use stackmedic_exporter::probe::tail::{
    StartAt, TailOptions, Tailer, FINGERPRINT_BYTES, REMOVED_IDLE_POLLS,
};

/// Line prefixes: each file, and each file after a truncation, writes its lines with the next
/// of these, so that no two files begin alike and a truncated file that grew again never has
/// its old first bytes (the case the tailer's fingerprint cannot tell apart, documented as
/// such).
const GENERATIONS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

const VALUES: [&str; 5] = ["api", "legacy", "v3", "-", ""];

/// How long a rotated file is followed after its last change, in the test's seconds.
const ROTATED_IDLE: u64 = 3600;
/// Most rotated files followed at once, small so that the cap is met.
const MAX_ROTATED: usize = 4;
/// How far before the previous poll a modification still counts as since then.
const MODIFIED_SLACK: u64 = 2;

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
    /// Its name in the folder; `None` once removed.
    name: Option<String>,
    /// The test's time of its last change.
    modified: u64,
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
    /// The test's clock, in seconds.
    now: u64,
    wall: SystemTime,
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
            now: 1_000,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    fn time(&self, at: u64) -> SystemTime {
        self.wall + Duration::from_secs(at)
    }

    fn new_generation(&mut self) -> Option<u8> {
        let g = *GENERATIONS.get(self.generations)?;
        self.generations += 1;
        Some(g)
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

    /// Writes bytes through the writer's handle, to the real file and the model, and stamps
    /// the file with the time.
    fn write(&mut self, bytes: &[u8]) {
        let at = self.time(self.now);
        let Some((id, file)) = &mut self.writer else {
            return;
        };
        file.write_all(bytes).expect("append");
        file.set_modified(at).expect("set the modification time");
        self.files[*id].content.extend_from_slice(bytes);
        self.files[*id].modified = self.now;
    }

    fn finish_line(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        self.write(&rest);
    }

    /// Creates an empty file at the path.
    fn create(&mut self) -> bool {
        let Some(generation) = self.new_generation() else {
            return false;
        };
        let f = File::create(&self.path).expect("create the log");
        f.set_modified(self.time(self.now)).expect("stamp");
        self.files.push(ModelFile {
            content: Vec::new(),
            generation,
            truncations: 0,
            name: Some("access.log".into()),
            modified: self.now,
        });
        self.at_path = Some(self.files.len() - 1);
        true
    }

    /// Moves the file at the path aside under a rotated file's name.
    fn rename_aside(&mut self) -> bool {
        let Some(id) = self.at_path.take() else {
            return false;
        };
        self.names += 1;
        let name = format!("access.log.{}", self.names);
        std::fs::rename(&self.path, self.dir.join(&name)).expect("rename");
        self.files[id].name = Some(name);
        true
    }

    /// The writer reopens its log (creating it if there is none), finishing its line first.
    fn reopen(&mut self) -> bool {
        self.finish_line();
        if self.at_path.is_none() && !self.create() {
            return false;
        }
        let id = self.at_path.expect("a file at the path");
        let f = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .expect("reopen");
        self.writer = Some((id, f));
        true
    }

    /// Whether a name is one of the log's rotated files (as the tailer's folder search says).
    fn sibling(name: &str) -> bool {
        name.strip_prefix("access.log")
            .is_some_and(|rest| rest.len() >= 2 && rest.starts_with(['.', '-', '_']))
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
    DeleteRotated,
    CopyTruncate {
        regrow: bool,
    },
    /// Rotations between two polls: each a new log, written, renamed aside; the writer follows
    /// each new log, or keeps writing the first (a writer that never reopens).
    Backlog {
        rotations: usize,
        follow: bool,
    },
    Wait(u64),
    Poll(u64),
}

fn pick(rng: &mut Rng) -> Step {
    match rng.below(100) {
        0..=21 => Step::Append(1 + rng.below(4)),
        22..=29 => Step::AppendPart,
        30..=34 => Step::Rename,
        35..=37 => Step::Create,
        38..=42 => Step::Reopen,
        43..=44 => Step::Delete,
        45..=46 => Step::DeleteRotated,
        47..=50 => Step::CopyTruncate {
            regrow: rng.chance(70),
        },
        51..=53 => Step::Backlog {
            rotations: 2 + rng.below(8),
            follow: rng.chance(60),
        },
        54..=56 => Step::Wait(600 * (1 + rng.below(12) as u64)),
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
        Step::Rename => return world.rename_aside(),
        Step::Create => {
            if world.at_path.is_some() {
                return false;
            }
            return world.create();
        }
        Step::Reopen => return world.reopen(),
        Step::Delete => {
            let Some(id) = world.at_path.take() else {
                return false;
            };
            std::fs::remove_file(&world.path).expect("delete");
            world.files[id].name = None;
        }
        Step::DeleteRotated => {
            let rotated: Vec<usize> = (0..world.files.len())
                .filter(|i| {
                    Some(*i) != world.at_path
                        && world.files[*i].name.as_deref().is_some_and(World::sibling)
                })
                .collect();
            if rotated.is_empty() {
                return false;
            }
            let id = rotated[rng.below(rotated.len())];
            let name = world.files[id].name.take().expect("named");
            std::fs::remove_file(world.dir.join(name)).expect("delete a rotated file");
        }
        Step::CopyTruncate { regrow } => {
            let (Some(id), Some((w, _))) = (world.at_path, &world.writer) else {
                return false;
            };
            if *w != id {
                return false;
            }
            let Some(generation) = world.new_generation() else {
                return false;
            };
            world.finish_line();
            // The copy goes under a name that is not the log's rotated file's, so the tailer
            // finds no copy (that case is a unit test and an integration test of its own):
            // what it saw of the file and did not read is counted as skipped.
            world.names += 1;
            let copy = world.dir.join(format!("copy-{}", world.names));
            std::fs::copy(&world.path, copy).expect("copy");
            let old_len = world.files[id].content.len();
            OpenOptions::new()
                .write(true)
                .open(&world.path)
                .and_then(|f| f.set_len(0))
                .expect("truncate");
            let f = &mut world.files[id];
            f.content.clear();
            f.generation = generation;
            f.truncations += 1;
            f.modified = world.now;
            File::options()
                .write(true)
                .open(&world.path)
                .and_then(|f| f.set_modified(world.time(world.now)))
                .expect("stamp");
            if regrow {
                // Grow past where the file was before the next poll.
                while world.files[id].content.len() <= old_len {
                    let l = world.line(rng, generation);
                    world.write(&l);
                }
            }
        }
        Step::Backlog { rotations, follow } => {
            if world.generations + rotations > GENERATIONS.len() {
                return false;
            }
            for _ in 0..rotations {
                if world.at_path.is_none() {
                    world.create();
                }
                if follow || world.writer.is_none() {
                    world.reopen();
                }
                let n = 1 + rng.below(3);
                apply(world, rng, Step::Append(n));
                world.rename_aside();
                world.now += 1;
            }
            world.create();
        }
        Step::Wait(_) | Step::Poll(_) => {}
    }
    true
}

/// What the model knows of a file the tailer follows.
struct Track {
    file: usize,
    offset: usize,
    partial: Vec<u8>,
    quiet: u32,
    changed_at: u64,
    seen_len: usize,
    truncations_seen: u64,
}

impl Track {
    fn new(world: &World, file: usize, offset: usize) -> Self {
        Self {
            file,
            offset,
            partial: Vec::new(),
            quiet: 0,
            changed_at: world.now,
            seen_len: world.files[file].content.len(),
            truncations_seen: world.files[file].truncations,
        }
    }
}

/// What the model remembers of a file let go or left alone: how far it is accounted for, and
/// of which content (the first `head` bytes of the file as it was then).
struct Known {
    offset: usize,
    head: usize,
    truncations: u64,
}

/// The reference model of the tailer's contract.
struct Model {
    start_at: StartAt,
    previous: Option<u64>,
    current: Option<Track>,
    rotated: VecDeque<Track>,
    memory: BTreeMap<usize, Known>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    lines: Vec<Vec<u8>>,
    renamed: u64,
    truncated: u64,
    found: u64,
    skipped_rotated: u64,
    skipped_truncated: u64,
    rotated_open: usize,
}

impl Model {
    fn new(start_at: StartAt) -> Self {
        Self {
            start_at,
            previous: None,
            current: None,
            rotated: VecDeque::new(),
            memory: BTreeMap::new(),
        }
    }

    fn tracks(&self, file: usize) -> bool {
        self.rotated
            .iter()
            .chain(self.current.as_ref())
            .any(|t| t.file == file)
    }

    /// Remembers a file as accounted for up to `offset`, known by its first `read` bytes.
    fn remember(&mut self, world: &World, file: usize, offset: usize, read: usize) {
        self.memory.insert(
            file,
            Known {
                offset,
                head: read.min(FINGERPRINT_BYTES),
                truncations: world.files[file].truncations,
            },
        );
    }

    fn poll(&mut self, world: &World, mut budget: u64) -> Seen {
        let mut seen = Seen::default();
        let previous = self.previous.replace(world.now);
        let current = self.current.as_ref().map(|t| t.file);
        let siblings: Vec<usize> = (0..world.files.len())
            .filter(|i| world.files[*i].name.as_deref().is_some_and(World::sibling))
            .collect();
        if previous.is_none() {
            // The rotated files already there are history.
            for &f in &siblings {
                let len = world.files[f].content.len();
                self.remember(world, f, len, len);
            }
            if let Some(f) = world.at_path {
                let offset = if self.start_at == StartAt::End {
                    world.files[f].content.len()
                } else {
                    0
                };
                self.current = Some(Track::new(world, f, offset));
            }
        } else if let Some(f) = world.at_path.filter(|f| Some(*f) != current) {
            if let Some(old) = self.current.replace(Track::new(world, f, 0)) {
                self.rotated.push_back(old);
                seen.renamed += 1;
            }
        }
        // A file that was truncated is read again from its start, unless nothing of it had
        // been read (then there is nothing to notice); what was seen of it and not read is
        // skipped (the copy is not among the log's rotated files).
        for t in self.rotated.iter_mut().chain(self.current.as_mut()) {
            let file = &world.files[t.file];
            if file.truncations != t.truncations_seen {
                t.truncations_seen = file.truncations;
                if t.offset > 0 {
                    seen.truncated += 1;
                    seen.skipped_truncated += (t.seen_len - t.offset + t.partial.len()) as u64;
                    t.offset = 0;
                    t.partial.clear();
                }
            }
            t.seen_len = file.content.len();
        }
        // The folder is searched when the path no longer holds the file that was read.
        if let Some(previous) = previous.filter(|_| world.at_path != current) {
            let mut found: Vec<(u64, String, Track)> = Vec::new();
            for &f in &siblings {
                if self.tracks(f) {
                    continue;
                }
                let file = &world.files[f];
                let len = file.content.len();
                if let Some(k) = self.memory.get(&f) {
                    // The same file as remembered: nothing of it was known but its identity, or
                    // it still begins as it did.
                    let same = k.head == 0 || (k.truncations == file.truncations && len >= k.head);
                    if same {
                        if len > k.offset {
                            let offset = k.offset;
                            self.memory.remove(&f);
                            found.push((file.modified, file.name.clone().unwrap(), {
                                let mut t = Track::new(world, f, offset);
                                t.changed_at = world.now;
                                t
                            }));
                        }
                        continue;
                    }
                }
                if file.modified + MODIFIED_SLACK >= previous {
                    self.memory.remove(&f);
                    found.push((
                        file.modified,
                        file.name.clone().unwrap(),
                        Track::new(world, f, 0),
                    ));
                } else {
                    self.remember(world, f, len, len);
                }
            }
            found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            seen.found += found.len() as u64;
            self.rotated.extend(found.into_iter().map(|(_, _, t)| t));
        }
        let mut at_end = Vec::new();
        for t in self.rotated.iter_mut().chain(self.current.as_mut()) {
            let file = &world.files[t.file];
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
            let end = t.offset >= file.content.len();
            if n > 0 {
                t.quiet = 0;
                t.changed_at = world.now;
            } else if end {
                t.quiet += 1;
            }
            at_end.push(end);
        }
        // Let go of rotated files that are done, and of the oldest beyond the cap.
        let mut kept = VecDeque::new();
        let rotated: Vec<Track> = self.rotated.drain(..).collect();
        for (t, end) in rotated.into_iter().zip(at_end) {
            let linked = world.files[t.file].name.is_some();
            let done = end
                && ((!linked && t.quiet >= REMOVED_IDLE_POLLS)
                    || world.now - t.changed_at >= ROTATED_IDLE);
            if done {
                self.release(world, t, &mut seen);
            } else {
                kept.push_back(t);
            }
        }
        while kept.len() > MAX_ROTATED {
            let t = kept.pop_front().expect("more than the cap");
            let len = world.files[t.file].content.len();
            if len > t.offset {
                // Let go unread: what it holds, and the unfinished line whose end is in it, are
                // skipped, and it is accounted for up to its length.
                seen.skipped_rotated += (len - t.offset + t.partial.len()) as u64;
                self.remember(world, t.file, len, t.offset);
            } else {
                self.release(world, t, &mut seen);
            }
        }
        self.rotated = kept;
        seen.rotated_open = self.rotated.len();
        seen
    }

    /// A file let go: its last line without a newline is complete, and it is remembered.
    fn release(&mut self, world: &World, t: Track, seen: &mut Seen) {
        if !t.partial.is_empty() {
            seen.lines.push(t.partial);
        }
        self.remember(world, t.file, t.offset, t.offset);
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

/// What the sequences did, summed: so that a run can show (and the test can check) that the
/// cases it is about happened.
#[derive(Debug, Default)]
struct Totals {
    lines: u64,
    renamed: u64,
    truncated: u64,
    found: u64,
    skipped_rotated: u64,
    skipped_truncated: u64,
    polls_with_rotated_open: u64,
}

fn run_sequence(start: u64, totals: &mut Totals) {
    let mut rng = Rng::new(start);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut world = World::new(dir.path());
    // Most sequences begin with a log that has history; some with no log at all yet.
    if rng.chance(75) {
        apply(&mut world, &mut rng, Step::Reopen);
        let n = rng.below(6);
        apply(&mut world, &mut rng, Step::Append(n));
        // Some with rotated files from before the first poll (history, not read).
        if rng.chance(30) {
            apply(&mut world, &mut rng, Step::Rename);
            apply(&mut world, &mut rng, Step::Reopen);
            apply(&mut world, &mut rng, Step::Append(2));
        }
    }
    let start_at = if rng.chance(50) {
        StartAt::End
    } else {
        StartAt::Beginning
    };
    let options = TailOptions {
        start_at,
        rotated_idle: Duration::from_secs(ROTATED_IDLE),
        max_rotated: MAX_ROTATED,
    };
    let mut tailer = Tailer::new(&world.path, options);
    let mut model = Model::new(start_at);
    let base = Instant::now();
    let mut counts = ([0u64; 5], [0u64; 5]);
    let mut log: Vec<String> = vec![format!("start_at {start_at:?}")];
    let steps = 20 + rng.below(70);
    for i in 0..steps {
        world.now += 1;
        // Every sequence ends with enough unlimited polls to drain everything.
        let step = if i + 4 >= steps {
            Step::Poll(u64::MAX)
        } else {
            pick(&mut rng)
        };
        if let Step::Wait(s) = step {
            world.now += s;
        }
        if !apply(&mut world, &mut rng, step) {
            continue;
        }
        log.push(format!("{step:?} at {}", world.now));
        let (real, expected) = match step {
            Step::Poll(budget) => {
                let mut lines = Vec::new();
                let report = tailer
                    .poll_at(
                        base + Duration::from_secs(world.now),
                        world.time(world.now),
                        budget,
                        &mut |l| lines.push(l.to_vec()),
                    )
                    .unwrap_or_else(|e| panic!("sequence {start}: poll failed: {e}"));
                assert_eq!(
                    report.skipped.compressed, 0,
                    "sequence {start}: nothing is compressed here"
                );
                let real = Seen {
                    lines,
                    renamed: report.renamed,
                    truncated: report.truncated,
                    found: report.found + report.copies,
                    skipped_rotated: report.skipped.too_many_rotated,
                    skipped_truncated: report.skipped.truncated,
                    rotated_open: report.rotated_open,
                };
                (real, model.poll(&world, budget))
            }
            _ => (Seen::default(), Seen::default()),
        };
        totals.lines += real.lines.len() as u64;
        totals.renamed += real.renamed;
        totals.truncated += real.truncated;
        totals.found += real.found;
        totals.skipped_rotated += real.skipped_rotated;
        totals.skipped_truncated += real.skipped_truncated;
        totals.polls_with_rotated_open += u64::from(real.rotated_open > 0);
        for l in &real.lines {
            counts.0[classify(l)] += 1;
        }
        for l in &expected.lines {
            counts.1[classify(l)] += 1;
        }
        if real != expected || counts.0 != counts.1 {
            let show = |s: &Seen| {
                s.lines
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect::<Vec<_>>()
            };
            let recent: Vec<&String> = log.iter().rev().take(40).rev().collect();
            panic!(
                "sequence {start}, step {i} ({step:?}): the tailer and the model differ\n\
                 tailer: {:?} {:?}\n model: {:?} {:?}\n\
                 counts (api, legacy, other, missing, unmatched): tailer {:?}, model {:?}\n\
                 last steps: {recent:?}",
                show(&real),
                Seen {
                    lines: Vec::new(),
                    ..real
                },
                show(&expected),
                Seen {
                    lines: Vec::new(),
                    ..expected
                },
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
    let mut totals = Totals::default();
    for start in first..first + n {
        run_sequence(start, &mut totals);
    }
    eprintln!("{n} sequences from number {first}: the tailer agreed with the model; {totals:?}");
    // The cases the sequences are made for happen, so that agreement means something.
    if n >= 100 {
        assert!(
            totals.found > 0
                && totals.skipped_rotated > 0
                && totals.skipped_truncated > 0
                && totals.renamed > 0
                && totals.truncated > 0
                && totals.polls_with_rotated_open > 0,
            "{totals:?}"
        );
    }
}

#[test]
fn the_model_sees_what_a_careful_reader_would() {
    // The model itself, on a fixed story: without budgets, a writer that keeps its descriptor
    // through a rotation and a quiet night, and a backlog of renames between two polls, every
    // complete line is delivered exactly once; the only lines lost are those truncated away
    // before a poll, and they are counted.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new(7);
    let mut world = World::new(dir.path());
    let mut model = Model::new(StartAt::Beginning);
    let mut delivered = 0;
    let mut skipped = 0;
    let story = [
        Step::Poll(u64::MAX),
        Step::Reopen,
        Step::Append(3),
        Step::Poll(u64::MAX),
        // Rename and create, the writer keeps its descriptor.
        Step::Rename,
        Step::Create,
        Step::Append(2),
        Step::Poll(u64::MAX),
        Step::Wait(8 * 3600),
        Step::Poll(u64::MAX),
        Step::Append(1),
        Step::Poll(u64::MAX),
        Step::Backlog {
            rotations: 5,
            follow: true,
        },
        Step::Poll(u64::MAX),
        Step::Reopen,
        Step::Append(2),
        Step::Poll(u64::MAX),
        Step::CopyTruncate { regrow: true },
        Step::Poll(u64::MAX),
    ];
    for step in story {
        world.now += 1;
        if let Step::Wait(s) = step {
            world.now += s;
        }
        assert!(apply(&mut world, &mut rng, step), "{step:?}");
        if let Step::Poll(b) = step {
            let seen = model.poll(&world, b);
            delivered += seen.lines.len();
            skipped += seen.skipped_truncated;
        }
    }
    // Lines written to the truncated file after the last poll before the truncation are
    // lost; here there are none, and every line written is delivered.
    assert_eq!(skipped, 0);
    assert_eq!(delivered as u64, world.seq, "{delivered} of {}", world.seq);
}
