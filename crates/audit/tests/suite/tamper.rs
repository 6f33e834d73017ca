//! Each edit an attacker with the store's files could make is found, and located.

use std::path::{Path, PathBuf};

use portcullis_audit::verify::Problem;
use portcullis_audit::{HostKey, Options, Store};

use super::{exec, open, scratch, verify};

/// A store of 1,000 execs over several segments, checkpointed every 100 records.
fn build(name: &str) -> PathBuf {
    let root = scratch(name);
    let store = open(&root, Options { checkpoint_records: 100, segment_bytes: 48 << 10, ..Options::default() });
    for i in 0..1000 {
        store.commit(exec("s1", i)).unwrap();
    }
    store.close().unwrap();
    let report = verify(&root);
    assert!(report.ok() && report.segments >= 3, "{report:?}");
    root
}

fn segment(root: &Path, n: u64) -> PathBuf {
    root.join(format!("audit/{n:08}.jsonl"))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

fn problem(root: &Path) -> Problem {
    let report = verify(root);
    match report.problem.clone() {
        Some(p) => p,
        None => panic!("not detected: {report:?}"),
    }
}

#[test]
fn a_flipped_byte_is_found_at_its_record() {
    let root = build("flip");
    let path = segment(&root, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let line_start = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(48).unwrap().0 + 1; // line 50
    let target = line_start + bytes[line_start..].windows(4).position(|w| w == b"--n=").unwrap() + 4;
    bytes[target] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let p = problem(&root);
    assert_eq!((p.segment.clone(), p.line, p.seq), (path, 50, Some(50)), "{p}");
    assert_eq!(p.offset, line_start as u64);
    assert!(p.what.contains("changed"), "{p}");
}

#[test]
fn a_deleted_line_is_found_where_it_was() {
    let root = build("delete");
    let path = segment(&root, 1);
    let mut l = lines(&path);
    l.remove(29);
    write_lines(&path, &l);
    let p = problem(&root);
    assert_eq!((p.line, p.seq), (30, Some(31)), "{p}");
    assert!(p.what.contains("record 30 is missing"), "{p}");
}

#[test]
fn swapped_lines_are_found() {
    let root = build("swap");
    let path = segment(&root, 2);
    let mut l = lines(&path);
    l.swap(10, 11);
    write_lines(&path, &l);
    let p = problem(&root);
    assert_eq!((p.segment.clone(), p.line), (path, 11), "{p}");
}

#[test]
fn a_truncated_segment_is_found() {
    let root = build("truncate");
    let last = portcullis_audit::store::segments(&root.join("audit")).unwrap().last().unwrap().1.clone();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len / 2).unwrap();
    let p = problem(&root);
    assert!(p.what.contains("removed from the end"), "{p}");
    assert!(p.segment.file_name().unwrap().to_str().unwrap().starts_with("HEAD"), "{p}");
}

#[test]
fn a_removed_segment_is_found_first_middle_or_last() {
    for (which, expect) in
        [(0, "no signed prune marker"), (1, "segment 00000002.jsonl is missing"), (9, "removed from the end")]
    {
        let root = build(&format!("remove{which}"));
        let all = portcullis_audit::store::segments(&root.join("audit")).unwrap();
        let victim = &all[which.min(all.len() - 1)].1;
        std::fs::remove_file(victim).unwrap();
        let p = problem(&root);
        assert!(p.what.contains(expect), "removing {}: {p}", victim.display());
    }
}

#[test]
fn a_checkpoint_signed_with_another_key_is_found() {
    let root = build("forge");
    let other_root = scratch("forge-other");
    let other = HostKey::load_or_create(&other_root.join("audit.key")).unwrap();
    // The store's heads do not verify under another key: a writer holding it is refused.
    let refused = Store::open(
        &root.join("audit"),
        HostKey::load_or_create(&other_root.join("audit.key")).unwrap(),
        Options::default(),
    );
    assert!(format!("{:?}", refused.unwrap_err()).contains("no copy of the store's signed head verifies"));
    // A forger who also replaces the heads with ones of its own key gets to write.
    drop(
        Store::open(
            &other_root.join("audit"),
            HostKey::load_or_create(&other_root.join("audit.key")).unwrap(),
            Options::default(),
        )
        .unwrap(),
    );
    for h in ["HEAD.0", "HEAD.1"] {
        std::fs::copy(other_root.join("audit").join(h), root.join("audit").join(h)).unwrap();
    }
    let forger = Store::open(&root.join("audit"), other, Options::default()).unwrap();
    forger.append(exec("forged", 0)).unwrap();
    forger.close().unwrap();
    let p = problem(&root);
    assert_eq!(p.seq, Some(verify_last_good(&root) + 2), "{p}");
    assert!(p.what.contains("not by this host's key"), "{p}");
}

/// The records before the forger's: the last one the honest store wrote.
fn verify_last_good(root: &Path) -> u64 {
    let mut last = 0;
    portcullis_audit::read::each_line(&root.join("audit"), |l| {
        let r = portcullis_audit::read::parse(l).unwrap();
        if r.record.session == "forged" {
            return std::ops::ControlFlow::Break(());
        }
        last = r.seq;
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    last
}

#[test]
fn a_rechained_edit_is_caught_by_the_next_checkpoint() {
    let root = build("rechain");
    let path = segment(&root, 1);
    let mut l = lines(&path);
    l[4] = l[4].replace("status", "push --force");
    // Recompute every `prev` after the edit, as an attacker without the key would.
    for i in 5..l.len() {
        let prev: String = blake3::hash(l[i - 1].as_bytes()).to_hex().to_string();
        let start = l[i].find("\"prev\":\"").unwrap() + 8;
        l[i].replace_range(start..start + 64, &prev);
    }
    write_lines(&path, &l);
    let p = problem(&root);
    assert!(p.what.contains("checkpoint"), "{p}");
    assert!(p.seq.is_some_and(|s| s <= 101), "{p}");
}

/// The store cut back to any point, with its heads kept or deleted: never "intact". (A store
/// once read "intact" with its heads deleted and 1,107 records cut back to its first
/// checkpoint's 16.)
#[test]
fn a_store_cut_back_anywhere_is_never_intact_with_or_without_its_heads() {
    let root = scratch("cut");
    let store = open(&root, Options { checkpoint_records: 20, ..Options::default() });
    for i in 0..100 {
        store.append(exec("s1", i)).unwrap();
    }
    store.close().unwrap();
    let dir = root.join("audit");
    let path = segment(&root, 1);
    let whole = std::fs::read(&path).unwrap();
    let heads: Vec<(PathBuf, Vec<u8>)> =
        ["HEAD.0", "HEAD.1"].iter().map(|h| (dir.join(h), std::fs::read(dir.join(h)).unwrap())).collect();
    assert!(verify(&root).ok(), "the whole store verifies");
    // Every line's start and a byte inside every line, and the whole store.
    let mut cuts: Vec<usize> = vec![0, whole.len()];
    for (i, b) in whole.iter().enumerate() {
        if *b == b'\n' && i + 1 < whole.len() {
            cuts.extend([i + 1, i + 1 + 40]);
        }
    }
    let key = super::key(&root).public();
    let mut checked = 0;
    for cut in cuts {
        for keep_heads in [true, false] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            for (head, bytes) in &heads {
                if keep_heads {
                    std::fs::write(head, bytes).unwrap();
                } else {
                    std::fs::remove_file(head).unwrap();
                }
            }
            let report = portcullis_audit::verify::verify(&dir, &key).unwrap();
            let expect_problem = !keep_heads || cut < whole.len();
            assert_eq!(
                report.problem.is_some(),
                expect_problem,
                "cut at byte {cut}, heads kept: {keep_heads}: {report:?}"
            );
            if !keep_heads {
                assert!(report.problem.unwrap().what.contains("missing"), "cut at byte {cut}");
            }
            checked += 1;
        }
    }
    assert!(checked > 400, "{checked} cuts");
}

/// Deleting the heads and then letting the next session write would hide a cut under a new
/// head: with both gone the writer refuses the store, naming why; with one gone it restores it
/// from the other and says so in the chain.
#[test]
fn a_store_whose_heads_were_deleted_is_not_written_to() {
    let root = build("headless");
    let dir = root.join("audit");
    std::fs::remove_file(dir.join("HEAD.1")).unwrap();
    assert!(verify(&root).problem.is_some_and(|p| p.what.contains("missing")));
    let store = Store::open(&dir, super::key(&root), Options::default()).unwrap();
    store.close().unwrap();
    assert!(dir.join("HEAD.1").is_file());
    let text: String = portcullis_audit::store::segments(&dir)
        .unwrap()
        .iter()
        .map(|(_, p)| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(text.contains("store_head_restored"), "the restoration is on the record");
    assert!(verify(&root).ok());
    for h in ["HEAD.0", "HEAD.1"] {
        std::fs::remove_file(dir.join(h)).unwrap();
    }
    let err = format!("{:?}", Store::open(&dir, super::key(&root), Options::default()).unwrap_err());
    assert!(err.contains("heads are missing") && err.contains("cannot prove its length"), "{err}");
}

/// A writer that finds the store shorter than its head says never writes on over the cut.
#[test]
fn a_writer_refuses_a_store_cut_back_under_its_heads() {
    let root = build("cut-writer");
    let path = segment(&root, 1);
    let mut l = lines(&path);
    l.truncate(10);
    write_lines(&path, &l);
    for (i, (_, p)) in portcullis_audit::store::segments(&root.join("audit")).unwrap().iter().enumerate() {
        if i > 0 {
            std::fs::remove_file(p).unwrap();
        }
    }
    let err = format!("{:?}", Store::open(&root.join("audit"), super::key(&root), Options::default()).unwrap_err());
    assert!(err.contains("records were cut from its end"), "{err}");
}

/// Every process writes its head over the older copy: after many short sessions neither copy
/// names the empty chain, so damaging the newest copy lets a cut reach back one checkpoint at
/// most. (Each process once began with the same copy, leaving the other at "created".)
#[test]
fn a_store_cut_back_with_its_newest_head_damaged_reaches_back_one_checkpoint_at_most() {
    let root = scratch("short-sessions");
    for session in 0..5 {
        let store = open(&root, Options::default());
        for i in 0..20 {
            store.append(exec(&format!("s{session}"), i)).unwrap();
        }
        store.close().unwrap();
    }
    let dir = root.join("audit");
    let seq_of = |h: &str| -> u64 {
        let text = std::fs::read_to_string(dir.join(h)).unwrap();
        let line = text.lines().nth(1).unwrap();
        serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"].as_u64().unwrap()
    };
    let (newest, older) = if seq_of("HEAD.0") > seq_of("HEAD.1") { ("HEAD.0", "HEAD.1") } else { ("HEAD.1", "HEAD.0") };
    let older_seq = seq_of(older) as usize;
    assert!(older_seq > 0, "a copy still names the empty chain after five sessions");
    let path = segment(&root, 1);
    let whole = lines(&path);
    std::fs::write(dir.join(newest), "1\n{\"seq\":9").unwrap();
    for cut in 0..older_seq {
        write_lines(&path, &whole[..cut]);
        let report = verify(&root);
        assert!(report.problem.is_some(), "cut to {cut} records of {}: {report:?}", whole.len());
    }
}

/// A new store has its heads before its first record, so it can prove its length from the start.
#[test]
fn a_new_store_has_its_heads_from_its_creation() {
    let root = scratch("fresh-heads");
    let store = open(&root, Options::default());
    for h in ["HEAD.0", "HEAD.1"] {
        assert!(root.join("audit").join(h).is_file(), "{h}");
    }
    let report = verify(&root);
    assert!(report.ok() && report.records == 0, "{report:?}");
    store.commit(exec("s1", 0)).unwrap();
    store.close().unwrap();
    assert!(verify(&root).ok());
}
