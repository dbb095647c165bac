//! `filesystem` probes against a real tmpfs of fixed size (8 MiB, 200 inodes) mounted for the
//! test: size, available bytes and inodes as `statvfs` reports them, folder sizes and file
//! counts that do not follow symbolic links (a link out of the tree and a loop), a walk bounded
//! by `max_entries`, a missing folder, and the figures of a filesystem filled to its last byte.

use std::io::Write;

use stackmedic_tests::exporter::{value, Exporter, WAIT};
use stackmedic_tests::metrics::find;
use stackmedic_tests::tmpfs::Tmpfs;

const MIB: usize = 1 << 20;

#[test]
fn filesystem_and_folders_of_a_fixed_size_tmpfs() {
    let fs = Tmpfs::mount("8m", 200);
    let root = fs.path();
    let hls = root.join("hls");
    std::fs::create_dir_all(hls.join("cam-yard")).expect("mkdir");
    std::fs::create_dir_all(hls.join("cam-hall")).expect("mkdir");
    let backups = root.join("backups");
    std::fs::create_dir(&backups).expect("mkdir");
    for (i, dir) in ["cam-yard", "cam-yard", "cam-hall"].iter().enumerate() {
        let data = stackmedic_tests::pseudo_random_bytes(MIB, i as u64 + 1);
        std::fs::write(hls.join(dir).join(format!("seg{i}.ts")), data).expect("write segment");
    }
    std::fs::write(
        backups.join("owui-data__20261128T030000Z.tar.gz"),
        vec![7u8; 2 * MIB],
    )
    .expect("write backup");
    // Neither a link out of the tree (the backups, 2 MiB) nor a loop may be followed.
    std::os::unix::fs::symlink(&backups, hls.join("cam-hall/backups")).expect("symlink");
    std::os::unix::fs::symlink(&hls, hls.join("cam-yard/loop")).expect("symlink");

    let r = root.display();
    let config = format!(
        "global: {{interval: 300ms, timeout: 250ms}}\n\
         probes:\n\
         - name: media-disk\n  filesystem:\n    path: {r}/hls\n    folders:\n      - {{path: {r}/hls, name: hls}}\n      - {{path: {r}/backups}}\n\
         - name: bounded\n  filesystem: {{path: {r}, folders: [{{path: {r}/hls, name: hls}}], max_entries: 3}}\n\
         - name: missing\n  filesystem: {{path: {r}, folders: [{{path: {r}/gone, name: gone}}]}}\n"
    );
    let mut exporter = Exporter::start(&config);
    let s = exporter.wait_for("every filesystem probe ran", WAIT, |s| {
        ["media-disk", "bounded", "missing"]
            .iter()
            .all(|p| find(s, "stackmedic_probe_success", &[("probe", p)]).is_some())
    });
    let v = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);
    let disk = [("probe", "media-disk")];
    assert_eq!(v("stackmedic_probe_success", &disk), 1.0);
    assert_eq!(
        v("stackmedic_filesystem_size_bytes", &disk),
        (8 * MIB) as f64
    );
    // 5 MiB of files in 4 KiB pages, plus a few pages of folders and links.
    let avail = v("stackmedic_filesystem_avail_bytes", &disk);
    assert!(
        avail <= (3 * MIB) as f64 && avail >= (3 * MIB - 64 * 1024) as f64,
        "{avail}"
    );
    assert_eq!(v("stackmedic_filesystem_free_bytes", &disk), avail);
    assert_eq!(v("stackmedic_filesystem_inodes", &disk), 200.0);
    // Root, 4 folders, 4 files, 2 links.
    assert_eq!(v("stackmedic_filesystem_inodes_free", &disk), 189.0);
    let hls_folder = [("probe", "media-disk"), ("folder", "hls")];
    assert_eq!(
        v("stackmedic_folder_size_bytes", &hls_folder),
        (3 * MIB) as f64
    );
    assert_eq!(v("stackmedic_folder_files", &hls_folder), 3.0);
    assert_eq!(v("stackmedic_folder_walk_complete", &hls_folder), 1.0);
    assert_eq!(v("stackmedic_folder_unreadable_entries", &hls_folder), 0.0);
    let backups_label = format!("{r}/backups");
    let b = [("probe", "media-disk"), ("folder", backups_label.as_str())];
    assert_eq!(v("stackmedic_folder_size_bytes", &b), (2 * MIB) as f64);
    assert_eq!(v("stackmedic_folder_files", &b), 1.0);

    // max_entries stops the walk: the figures are lower bounds, and say so.
    let bounded = [("probe", "bounded"), ("folder", "hls")];
    assert_eq!(v("stackmedic_probe_success", &[("probe", "bounded")]), 1.0);
    assert_eq!(v("stackmedic_folder_walk_complete", &bounded), 0.0);
    assert!(v("stackmedic_folder_files", &bounded) < 3.0);

    // A folder that does not exist fails the run with not_found; the filesystem is still read.
    assert_eq!(v("stackmedic_probe_success", &[("probe", "missing")]), 0.0);
    assert_eq!(
        v(
            "stackmedic_probe_failure_reason",
            &[("probe", "missing"), ("reason", "not_found")]
        ),
        1.0
    );
    assert_eq!(
        v("stackmedic_filesystem_size_bytes", &[("probe", "missing")]),
        (8 * MIB) as f64
    );

    // Fill the filesystem to its last byte: nothing is available any more.
    let mut filler = std::fs::File::create(root.join("filler")).expect("create filler");
    let chunk = vec![1u8; 64 * 1024];
    loop {
        match filler.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
    }
    let s = exporter.wait_value("stackmedic_filesystem_avail_bytes", &disk, 0.0);
    assert_eq!(value(&s, "stackmedic_probe_success", &disk), 1.0);
    // The status page shows the full filesystem and the walk that stopped early.
    let page = stackmedic_tests::http::get(&exporter.url("/"))
        .expect("status page")
        .text();
    assert!(page.contains("0 % available (0 B of 8.0 MiB)"), "{page}");
    assert!(page.contains("at least"), "{page}");
}
