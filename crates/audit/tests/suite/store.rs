use std::ops::ControlFlow;
use std::time::Duration;

use portcullis_audit::read::{self, Filter};
use portcullis_audit::{Durability, Kind, Options};

use super::{exec, open, scratch, verify};

#[test]
fn records_chain_across_sessions_checkpoints_and_segments() {
    let root = scratch("chain");
    let options = Options { checkpoint_records: 100, segment_bytes: 64 << 10, ..Options::default() };
    let store = open(&root, options.clone());
    for i in 0..700 {
        store.append(exec("s1", i)).unwrap();
    }
    store.close().unwrap();
    drop(store);
    // The next session continues the chain.
    let store = open(&root, options);
    for i in 0..300 {
        store.commit(exec("s2", i)).unwrap();
    }
    store.close().unwrap();
    let report = verify(&root);
    assert!(report.ok(), "{:?}", report.problem);
    assert!(report.segments >= 3, "{} segments", report.segments);
    assert!(report.checkpoints >= 10, "{} checkpoints", report.checkpoints);
    assert_eq!(report.signed_through, report.last_seq, "close ends with a checkpoint");
    let s2 = read::query(&root.join("audit"), &Filter { session: Some("s2".into()), ..Filter::default() }).unwrap();
    assert_eq!(s2.len(), 300);
    assert!(s2.windows(2).all(|w| w[1].seq > w[0].seq));
    let execs = read::query(&root.join("audit"), &Filter { kinds: vec![Kind::Exec], ..Filter::default() }).unwrap();
    assert_eq!(execs.len(), 1000);
    assert_eq!(read::exec_program(&execs[0]).as_deref(), Some("git"));
}

#[test]
fn close_with_runs_the_callers_work_while_the_commit_thread_writes_the_closing_checkpoint() {
    let root = scratch("close-with");
    let store = open(&root, Options::default());
    for i in 0..50 {
        store.append(exec("s", i)).unwrap();
    }
    let (value, closed) = store.close_with(|| 42);
    assert_eq!(value, 42);
    closed.unwrap();
    let report = verify(&root);
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.signed_through, report.last_seq, "close ends with a checkpoint over every record");
    let execs = read::query(&root.join("audit"), &Filter { kinds: vec![Kind::Exec], ..Filter::default() }).unwrap();
    assert_eq!(execs.len(), 50);
    // With the commit thread gone, a second close checkpoints here (nothing new to cover).
    store.close().unwrap();
    assert_eq!(verify(&root).last_seq, report.last_seq);
}

#[test]
fn two_writers_share_one_chain() {
    let root = scratch("writers");
    // Small segments: the writers seal them under each other's feet.
    let options = Options { checkpoint_records: 50, segment_bytes: 4 << 10, ..Options::default() };
    let a = open(&root, options.clone());
    let b = open(&root, options);
    std::thread::scope(|s| {
        s.spawn(|| (0..1500).for_each(|i| a.commit(exec("a", i)).unwrap()));
        s.spawn(|| (0..1500).for_each(|i| b.commit(exec("b", i)).unwrap()));
    });
    a.close().unwrap();
    b.close().unwrap();
    let report = verify(&root);
    assert!(report.ok(), "{:?}", report.problem);
    let all = read::query(&root.join("audit"), &Filter { kinds: vec![Kind::Exec], ..Filter::default() }).unwrap();
    assert_eq!(all.len(), 3000);
}

#[test]
fn secrets_in_inputs_never_reach_the_disk() {
    let root = scratch("redact");
    let store = open(&root, Options::default());
    let mut r = exec("s", 0);
    r.input =
        Some(serde_json::json!({"argv": ["curl", "-H", "Authorization: Bearer sk-live-0123456789abcdefghij", "x"]}));
    r.data.insert("GITHUB_TOKEN".into(), "ghp_0123456789abcdefghij0123456789abcd".into());
    store.commit(r).unwrap();
    store.close().unwrap();
    let mut text = Vec::new();
    read::each_line(&root.join("audit"), |l| {
        text.extend_from_slice(l);
        ControlFlow::Continue(())
    })
    .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains("0123456789abcdefghij"), "{text}");
    assert!(text.contains("[REDACTED]"));
}

#[test]
fn a_torn_tail_is_reported_then_repaired_and_the_chain_goes_on() {
    use std::io::Write;
    let root = scratch("torn");
    let store = open(&root, Options::default());
    for i in 0..10 {
        store.commit(exec("s1", i)).unwrap();
    }
    store.close().unwrap();
    drop(store);
    let segment = root.join("audit/00000001.jsonl");
    let whole = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new().append(true).open(&segment).unwrap().write_all(b"{\"seq\":12,\"prev\":\"ab").unwrap();
    let report = verify(&root);
    assert!(report.ok(), "{:?}", report.problem);
    let torn = report.torn.expect("the torn tail is reported");
    assert_eq!((torn.offset, torn.bytes), (whole, 20));
    let store = open(&root, Options::default());
    assert_eq!(store.repaired().map(|r| (r.offset, r.dropped)), Some((whole, 20)));
    store.commit(exec("s2", 0)).unwrap();
    store.close().unwrap();
    let report = verify(&root);
    assert!(report.ok() && report.torn.is_none(), "{report:?}");
    let repairs =
        read::query(&root.join("audit"), &Filter { kinds: vec![Kind::Lifecycle], ..Filter::default() }).unwrap();
    assert_eq!(repairs[0].record.event, "store_repaired");
}

#[test]
fn sync_durability_commits_each_record_before_returning() {
    let root = scratch("sync");
    let options =
        Options { durability: Durability::Sync, commit_interval: Duration::from_secs(3600), ..Options::default() };
    let store = open(&root, options);
    store.commit(exec("s", 0)).unwrap();
    // Written (and synced) without waiting for the commit thread's hour.
    let lines = std::fs::read_to_string(root.join("audit/00000001.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 1);
    assert!(lines.contains("\"seq\":1,\"prev\":\"0000"));
    // A queued record waits for the interval, or a commit.
    store.append(exec("s", 1)).unwrap();
    assert_eq!(std::fs::read_to_string(root.join("audit/00000001.jsonl")).unwrap().lines().count(), 1);
    store.commit(exec("s", 2)).unwrap();
    assert_eq!(std::fs::read_to_string(root.join("audit/00000001.jsonl")).unwrap().lines().count(), 3);
}

#[test]
fn follow_sees_records_as_they_are_written_across_segments() {
    let root = scratch("follow");
    let options = Options { segment_bytes: 8 << 10, commit_interval: Duration::from_millis(1), ..Options::default() };
    let store = open(&root, options);
    store.commit(exec("before", 0)).unwrap();
    let dir = root.join("audit");
    let seen = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut seen = Vec::new();
            read::follow(&dir, false, Duration::from_millis(5), |line| {
                let r = read::parse(line).unwrap();
                if r.record.kind == Kind::Exec {
                    seen.push(r.record.session.clone());
                }
                if seen.len() == 200 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            })
            .unwrap();
            seen
        });
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..200 {
            store.commit(exec("live", i)).unwrap();
        }
        reader.join().unwrap()
    });
    assert_eq!(seen.len(), 200);
    assert!(seen.iter().all(|s| s == "live"), "the tail starts at the end");
    store.close().unwrap();
    assert!(verify(&root).segments > 2);
}

/// Run by `crash_safety_*` in a child process: appends until killed.
#[test]
fn crash_child() {
    let Some(root) = std::env::var_os("PORTCULLIS_AUDIT_CRASH_ROOT") else { return };
    let store = open(std::path::Path::new(&root), Options { checkpoint_records: 500, ..Options::default() });
    std::fs::write(std::path::Path::new(&root).join("started"), b"").unwrap();
    for i in 0.. {
        store.append(exec("crash", i)).unwrap();
    }
}

#[test]
fn crash_safety_kill_9_under_load_loses_no_durable_record_and_the_chain_goes_on() {
    let root = scratch("crash");
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "suite::store::crash_child", "--nocapture"])
            .env("PORTCULLIS_AUDIT_CRASH_ROOT", &root)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = root.join("started");
        while !started.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_file(&started).unwrap();
        std::thread::sleep(Duration::from_millis(300 + 97 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let report = verify(&root);
        assert!(report.ok(), "round {round}: {:?}", report.problem);
        assert!(report.records > 100, "round {round}: only {} records", report.records);
    }
    // A new writer repairs any torn tail and chains on.
    let store = open(&root, Options::default());
    store.commit(exec("after", 0)).unwrap();
    store.close().unwrap();
    let report = verify(&root);
    assert!(report.ok() && report.torn.is_none(), "{report:?}");
    let after =
        read::query(&root.join("audit"), &Filter { session: Some("after".into()), ..Filter::default() }).unwrap();
    assert_eq!(after.len(), 1);
}

#[test]
fn prune_removes_old_segments_and_what_remains_still_verifies() {
    let root = scratch("prune");
    let options = Options { checkpoint_records: 100, segment_bytes: 16 << 10, ..Options::default() };
    let store = open(&root, options);
    let day = 86_400_000;
    let now = portcullis_audit::record::now_ms();
    for i in 0..900 {
        let mut r = exec(if i < 500 { "old" } else { "new" }, i);
        r.ts_ms = if i < 500 { now - 100 * day } else { now };
        store.commit(r).unwrap();
    }
    store.close().unwrap();
    drop(store);
    let dir = root.join("audit");
    let before = portcullis_audit::store::segments(&dir).unwrap().len();
    let key = super::key(&root);
    let dry = portcullis_audit::prune::prune(&dir, super::key(&root), now - 90 * day, true).unwrap();
    assert!(!dry.segments.is_empty());
    assert_eq!(portcullis_audit::store::segments(&dir).unwrap().len(), before, "a dry run removes nothing");
    let pruned = portcullis_audit::prune::prune(&dir, key, now - 90 * day, false).unwrap();
    assert_eq!(pruned.segments, dry.segments);
    let after = portcullis_audit::store::segments(&dir).unwrap();
    assert_eq!(after.len(), before - pruned.segments.len());
    let report = verify(&root);
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.first_seq, pruned.through_seq.unwrap() + 1);
    assert!(report.pruned.is_some());
    // Every new record is kept; only old ones went.
    let kept = read::query(&dir, &Filter { session: Some("new".into()), ..Filter::default() }).unwrap();
    assert_eq!(kept.len(), 400);
    let pruned_record = read::query(&dir, &Filter { kinds: vec![Kind::Lifecycle], ..Filter::default() }).unwrap();
    assert!(pruned_record.iter().any(|r| r.record.event == "store_pruned"));
    // Removing one more segment by hand is still caught, and so is a forged marker.
    let first = after[0].1.clone();
    let saved = std::fs::read(&first).unwrap();
    std::fs::remove_file(&first).unwrap();
    assert!(verify(&root).problem.unwrap().what.contains("was removed"));
    std::fs::write(&first, saved).unwrap();
    let marker = std::fs::read_to_string(dir.join("PRUNED")).unwrap();
    let seq = pruned.through_seq.unwrap();
    std::fs::write(dir.join("PRUNED"), marker.replace(&format!("\"seq\":{seq}"), &format!("\"seq\":{}", seq + 1)))
        .unwrap();
    assert!(verify(&root).problem.unwrap().what.contains("prune marker"));
}

#[test]
fn a_live_writer_cuts_off_what_a_dead_one_left_and_goes_on() {
    use std::io::Write;
    let root = scratch("dead-writer");
    let live = open(&root, Options::default());
    live.commit(exec("live", 0)).unwrap();
    // Another supervisor died halfway through a record (it held the lock; it is gone).
    let segment = root.join("audit/00000001.jsonl");
    std::fs::OpenOptions::new().append(true).open(&segment).unwrap().write_all(b"{\"seq\":2,\"prev\":\"0f0f").unwrap();
    live.commit(exec("live", 1)).unwrap();
    live.close().unwrap();
    let report = verify(&root);
    assert!(report.ok() && report.torn.is_none(), "{report:?}");
    let repairs =
        read::query(&root.join("audit"), &Filter { kinds: vec![Kind::Lifecycle], ..Filter::default() }).unwrap();
    assert_eq!(repairs.len(), 1);
    assert_eq!(repairs[0].record.data["dropped_bytes"], 21);
    assert_eq!(
        read::query(&root.join("audit"), &Filter { session: Some("live".into()), ..Filter::default() }).unwrap().len(),
        2
    );
}

#[test]
fn verify_while_a_writer_appends_sees_no_tampering() {
    let root = scratch("verify-live");
    let store = open(&root, Options { checkpoint_records: 20, segment_bytes: 32 << 10, ..Options::default() });
    let done = std::sync::atomic::AtomicBool::new(false);
    let checked = std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..2000 {
                store.commit(exec("live", i)).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut checked = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let report = verify(&root);
            assert!(report.ok(), "{:?}", report.problem);
            checked += 1;
        }
        checked
    });
    assert!(checked > 1, "verify never ran beside the writer");
    store.close().unwrap();
}

#[test]
fn group_commit_syncs_within_the_interval_and_an_idle_store_checkpoints_on_time() {
    let root = scratch("group");
    let options = Options {
        commit_interval: Duration::from_millis(10),
        checkpoint_interval: Duration::from_millis(200),
        ..Options::default()
    };
    let store = open(&root, options);
    // Queued as the store opens (before its commit thread may have looked): written within the
    // interval all the same.
    store.append(exec("s", 0)).unwrap();
    let segment = root.join("audit/00000001.jsonl");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(std::fs::read_to_string(&segment).unwrap().lines().count(), 1);
    std::thread::sleep(Duration::from_millis(600));
    let text = std::fs::read_to_string(&segment).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().nth(1).unwrap().contains("\"kind\":\"checkpoint\""));
    // Idle with everything signed: nothing more is written.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(std::fs::read_to_string(&segment).unwrap().lines().count(), 2);
    // A queued record is written within the interval without a commit (with a checkpoint at
    // once: the last is older than the checkpoint interval).
    store.append(exec("s", 1)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let text = std::fs::read_to_string(&segment).unwrap();
    assert!(text.lines().nth(2).is_some_and(|l| l.contains("--n=1")), "{text}");
    store.close().unwrap();
}

/// The alert baseline is written in place: a shorter baseline after a longer one must not keep
/// the longer one's tail, and the file stays private.
#[test]
fn the_alert_baseline_is_rewritten_in_place_whole() {
    use portcullis_audit::alerts::{AgentHistory, Baseline};
    use std::os::unix::fs::PermissionsExt;
    let root = scratch("baseline");
    let path = portcullis_audit::alerts::baseline_path(&root.join("audit"));
    assert!(Baseline::load(&path).unwrap().agents.is_empty(), "no file yet is an empty baseline");
    let mut long = Baseline::default();
    for agent in ["claude", "codex", "reviewer"] {
        let history = AgentHistory { tools: (0..50).map(|i| format!("tool-{i}")).collect(), ..Default::default() };
        long.agents.insert(agent.into(), history);
    }
    long.save(&path).unwrap();
    let long_len = std::fs::metadata(&path).unwrap().len();
    let mut short = Baseline::default();
    short.agents.insert("claude".into(), AgentHistory { tools: ["git".to_owned()].into(), ..Default::default() });
    short.save(&path).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < long_len / 10);
    let loaded = Baseline::load(&path).unwrap();
    assert_eq!(loaded.agents.keys().collect::<Vec<_>>(), ["claude"]);
    assert_eq!(loaded.agents["claude"].tools.iter().collect::<Vec<_>>(), ["git"]);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}
