use super::*;
use std::io::Write;

fn lines(t: &mut Tailer, budget: u64) -> (Vec<String>, PollReport) {
    let mut got = Vec::new();
    let r = t
        .poll(budget, &mut |l| {
            got.push(String::from_utf8_lossy(l).into_owned())
        })
        .expect("poll");
    (got, r)
}

fn lines_at(t: &mut Tailer, now: Instant, budget: u64) -> (Vec<String>, PollReport) {
    let mut got = Vec::new();
    let r = t
        .poll_at(now, SystemTime::now(), budget, &mut |l| {
            got.push(String::from_utf8_lossy(l).into_owned())
        })
        .expect("poll");
    (got, r)
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(text.as_bytes()).expect("write");
}

fn options(start_at: StartAt) -> TailOptions {
    TailOptions {
        start_at,
        ..TailOptions::default()
    }
}

#[test]
fn copytruncate_with_regrowth_past_the_old_offset() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "a1\na2\n");
    let mut t = Tailer::new(&p, options(StartAt::Beginning));
    assert_eq!(lines(&mut t, u64::MAX).0, ["a1", "a2"]);
    // Written after the poll, truncated before the next, no copy: counted as skipped when the
    // tailer saw it (here it did not: the file grew after the poll).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&p, "b1\nb2\nb3\n");
    let (got, r) = lines(&mut t, u64::MAX);
    assert_eq!(got, ["b1", "b2", "b3"]);
    assert_eq!(r.truncated, 1);
    assert_eq!(r.skipped, Skipped::default());
}

#[test]
fn copytruncate_reads_the_rest_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "a1\na2\n");
    let mut t = Tailer::new(&p, options(StartAt::Beginning));
    assert_eq!(lines(&mut t, u64::MAX).0, ["a1", "a2"]);
    // Lines after the poll, then logrotate's copytruncate: copy, then truncate.
    append(&p, "a3\na4 cut");
    std::fs::copy(&p, dir.path().join("a.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&p, "b1\n");
    let (got, r) = lines(&mut t, u64::MAX);
    assert_eq!(got, ["a3", "b1"]);
    assert_eq!((r.truncated, r.copies), (1, 1));
    assert_eq!(r.skipped, Skipped::default());
    // The copy is done; its last line without a newline is complete once the copy is let
    // go (it is no longer linked... here it is, so only after the idle time).
    let later = Instant::now() + DEFAULT_ROTATED_IDLE;
    let (got, r) = lines_at(&mut t, later, u64::MAX);
    assert_eq!(got, ["a4 cut"]);
    assert_eq!(r.rotated_open, 0);
}

#[test]
fn a_truncation_without_a_copy_counts_what_was_seen_and_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "a1\na2\na3\n");
    let mut t = Tailer::new(&p, options(StartAt::Beginning));
    // Three bytes: "a1\n"; the tailer has seen nine.
    assert_eq!(lines(&mut t, 3).0, ["a1"]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&p, "b1\n");
    let (got, r) = lines(&mut t, u64::MAX);
    assert_eq!(got, ["b1"]);
    assert_eq!(r.skipped.truncated, 6);
}

#[test]
fn a_renamed_file_is_finished_before_the_budget_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = Tailer::new(&p, options(StartAt::End));
    assert!(lines(&mut t, 10).0.is_empty());
    append(&p, "old1\nold2\nold3\n");
    std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
    append(&p, "new1\n");
    // Seven bytes: "old1\n" and a cut "ol", held back.
    let (got, r) = lines(&mut t, 7);
    assert_eq!(got, ["old1"]);
    assert_eq!(r.renamed, 1);
    assert!(!r.caught_up);
    let (got, _) = lines(&mut t, u64::MAX);
    assert_eq!(got, ["old2", "old3", "new1"]);
}

#[test]
fn a_writer_that_never_reopens_is_followed_through_a_quiet_spell() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = Tailer::new(&p, options(StartAt::End));
    let start = Instant::now();
    assert!(lines_at(&mut t, start, u64::MAX).0.is_empty());
    // Caddy keeps its handle: logrotate renames the log and creates a new one, which nobody
    // writes.
    let mut caddy = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
    append(&p, "");
    writeln!(caddy, "h1").unwrap();
    assert_eq!(lines_at(&mut t, start, u64::MAX).0, ["h1"]);
    // A quiet night: nine hours of polls with nothing new.
    for hour in 1..=9 {
        let (got, r) = lines_at(&mut t, start + Duration::from_secs(hour * 3600), u64::MAX);
        assert!(got.is_empty());
        assert_eq!(r.rotated_open, 1, "still followed after {hour} h");
    }
    writeln!(caddy, "h2").unwrap();
    let (got, _) = lines_at(&mut t, start + Duration::from_secs(10 * 3600), u64::MAX);
    assert_eq!(got, ["h2"]);
    // A day without a change: let go, and remembered.
    let (got, r) = lines_at(&mut t, start + Duration::from_secs(35 * 3600), u64::MAX);
    assert!(got.is_empty());
    assert_eq!(r.rotated_open, 0);
    // Written again after all, then the next rotation: found grown and read on.
    writeln!(caddy, "h3").unwrap();
    std::fs::rename(dir.path().join("a.log.1"), dir.path().join("a.log.2")).unwrap();
    std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
    append(&p, "");
    let (got, r) = lines_at(&mut t, start + Duration::from_secs(36 * 3600), u64::MAX);
    assert_eq!(got, ["h3"]);
    assert_eq!((r.renamed, r.found), (1, 1));
}

#[test]
fn a_removed_file_is_let_go_after_two_quiet_polls() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = Tailer::new(&p, options(StartAt::End));
    lines(&mut t, u64::MAX);
    let mut nginx = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    append(&p, "");
    writeln!(nginx, "late").unwrap();
    assert_eq!(lines(&mut t, u64::MAX).0, ["late"]);
    assert_eq!(lines(&mut t, u64::MAX).1.rotated_open, 1);
    assert_eq!(lines(&mut t, u64::MAX).1.rotated_open, 0);
}

#[test]
fn every_file_of_a_backlog_of_renames_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("access.log");
    append(&p, "");
    let mut t = Tailer::new(&p, options(StartAt::End));
    lines(&mut t, u64::MAX);
    // Twenty rotations between two polls, logrotate style: .N -> .N+1, log -> .1, new log.
    let mut expected = Vec::new();
    for round in 0..20 {
        for k in 0..3 {
            let line = format!("r{round:02}-{k}");
            append(&p, &format!("{line}\n"));
            expected.push(line);
        }
        for n in (1..=round + 1).rev() {
            let from = dir.path().join(format!("access.log.{n}"));
            if from.exists() {
                std::fs::rename(&from, dir.path().join(format!("access.log.{}", n + 1))).unwrap();
            }
        }
        std::fs::rename(&p, dir.path().join("access.log.1")).unwrap();
        append(&p, "");
        // Distinct modification times, as rotations an interval apart have.
        std::thread::sleep(Duration::from_millis(5));
    }
    let (mut got, r) = lines(&mut t, u64::MAX);
    assert_eq!(r.renamed, 1);
    assert_eq!(
        r.found, 19,
        "the first rotated file is the one that was followed"
    );
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(r.skipped, Skipped::default());
    // Nothing twice.
    assert!(lines(&mut t, u64::MAX).0.is_empty());
}

#[test]
fn compressed_backlogs_are_read_or_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("access.log");
    append(&p, "");
    std::fs::write(dir.path().join("access.log.9.gz"), gzip(b"history\n")).unwrap();
    let mut t = Tailer::new(&p, options(StartAt::End));
    lines(&mut t, u64::MAX);
    // Between two polls: the followed log is rotated and compressed at once (its content
    // arrives through the handle), a file rotated and compressed meanwhile (read through a
    // decoder), and one compressed by another tool (counted).
    append(&p, "followed\n");
    std::fs::rename(&p, dir.path().join("access.log.1")).unwrap();
    let followed = std::fs::read(dir.path().join("access.log.1")).unwrap();
    std::fs::write(dir.path().join("access.log.1.gz"), gzip(&followed)).unwrap();
    std::fs::remove_file(dir.path().join("access.log.1")).unwrap();
    std::fs::write(
        dir.path().join("access.log.2.gz"),
        gzip(b"missed1\nmissed2\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("access.log.3.xz"), b"0123456789").unwrap();
    append(&p, "new\n");
    let (mut got, r) = lines(&mut t, u64::MAX);
    got.sort();
    assert_eq!(got, ["followed", "missed1", "missed2", "new"]);
    assert_eq!(r.skipped.compressed, 10);
    assert_eq!(r.found, 1);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn too_many_rotated_files_are_counted_when_let_go_unread() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = Tailer::new(
        &p,
        TailOptions {
            max_rotated: 2,
            ..options(StartAt::End)
        },
    );
    lines(&mut t, u64::MAX);
    for i in 0..4 {
        append(&p, &format!("file{i}-line\n"));
        std::fs::rename(&p, dir.path().join(format!("a.log.r{i}"))).unwrap();
        append(&p, "");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Nothing read (budget 0): four rotated files, two kept.
    let (_, r) = lines(&mut t, 0);
    assert_eq!(r.rotated_open, 2);
    assert_eq!(r.skipped.too_many_rotated, 22);
}

#[test]
fn a_file_created_after_the_first_poll_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("late.log");
    let mut t = Tailer::new(&p, options(StartAt::End));
    let (got, r) = lines(&mut t, u64::MAX);
    assert!(got.is_empty() && !r.open);
    append(&p, "first\nsecond\n");
    assert_eq!(lines(&mut t, u64::MAX).0, ["first", "second"]);
}

#[test]
fn overlong_lines_are_skipped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    let long = "x".repeat(MAX_LINE_BYTES + 10);
    append(&p, &format!("ok1\n{long}\nok2\n"));
    let mut t = Tailer::new(&p, options(StartAt::Beginning));
    let (got, r) = lines(&mut t, u64::MAX);
    let lengths: Vec<usize> = got.iter().map(String::len).collect();
    assert_eq!(lengths, [3, 3], "only the two short lines");
    assert_eq!(r.overlong, 1);
    // Cut by the budget in the middle of the long line: still skipped whole.
    append(&p, &format!("{long}\nok3\n"));
    let mut lengths = Vec::new();
    for _ in 0..4 {
        let (got, _) = lines(&mut t, 50_000);
        lengths.extend(got.iter().map(String::len));
    }
    assert_eq!(lengths, [3]);
}

#[test]
fn a_line_as_long_as_the_limit_counts_with_lf_or_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    let exact = "y".repeat(MAX_LINE_BYTES);
    let over = "z".repeat(MAX_LINE_BYTES + 1);
    append(
        &p,
        &format!("{exact}\r\n{exact}\n{over}\r\n{over}\nend\r\n"),
    );
    let mut t = Tailer::new(&p, options(StartAt::Beginning));
    let mut got = Vec::new();
    let mut overlong = 0;
    // In pieces of every size around the limit, and whole.
    for budget in [u64::MAX, 1000, 65_535, 65_536, 65_537] {
        let mut t2 = Tailer::new(&p, options(StartAt::Beginning));
        let mut pieces = Vec::new();
        let mut n = 0;
        loop {
            let (l, r) = lines(&mut t2, budget);
            pieces.extend(l);
            n += r.overlong;
            if r.caught_up {
                break;
            }
        }
        assert_eq!(
            pieces.iter().map(String::len).collect::<Vec<_>>(),
            [MAX_LINE_BYTES, MAX_LINE_BYTES, 3],
            "budget {budget}"
        );
        assert_eq!(n, 2, "budget {budget}");
    }
    let (l, r) = lines(&mut t, u64::MAX);
    got.extend(l);
    overlong += r.overlong;
    assert_eq!(got.len(), 3);
    assert_eq!(overlong, 2);
}
