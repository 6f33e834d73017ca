//! Writing the store: records chained and appended with group commit, signed checkpoints,
//! segments that roll over, and the repair of a tail torn by a crash.
//!
//! Appending is cheap: [`Store::append`] redacts and encodes the record and queues its bytes.
//! Records are chained (`seq`, `prev`) only when a batch is written, under the store's `lock`
//! file, so several supervisors (one per session) append to one chain without coordinating
//! otherwise. A batch is written by whichever comes first: the store's commit thread (within
//! `commit_interval` of the batch's first record, then made durable with one `fdatasync`), a
//! full queue, or a caller of [`Store::commit`], which returns only once its record is written
//! (and, with [`Durability::Sync`], on disk). Callers that gate an action on its record use
//! `commit`: no audit, no action.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use serde_json::{Value, json};

use crate::key::{HostKey, checkpoint_message};
use crate::record::{Kind, Record};
use crate::redact::{Placeholder, Redactor};
use crate::{AuditError, hex};

/// When a record counts as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `commit` waits until the record is on disk (`fdatasync`, shared by every record in the
    /// batch).
    Sync,
    /// `commit` waits until the record is written; the commit thread makes it durable within
    /// `commit_interval` (group commit).
    Group,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sync" => Ok(Durability::Sync),
            "group" => Ok(Durability::Group),
            _ => Err(format!("`{s}` is not a durability (sync or group)")),
        }
    }
}

/// How the store writes.
#[derive(Clone)]
pub struct Options {
    /// When a record counts as stored.
    pub durability: Durability,
    /// The longest a queued record waits to be written and synced.
    pub commit_interval: Duration,
    /// A checkpoint after this many records …
    pub checkpoint_records: u64,
    /// … or this long after the last one, whichever comes first (and at `close`).
    pub checkpoint_interval: Duration,
    /// A segment is sealed and the next begun once it is this large.
    pub segment_bytes: u64,
    /// What masks secrets before they are stored.
    pub redactor: Arc<dyn Redactor>,
    /// The free space the store leaves on its filesystem (0: none). Below it, the store does
    /// not open, and takes only the records that end sessions (`lifecycle`, `limit`).
    pub min_free: u64,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("durability", &self.durability)
            .field("commit_interval", &self.commit_interval)
            .field("checkpoint_records", &self.checkpoint_records)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("segment_bytes", &self.segment_bytes)
            .field("min_free", &self.min_free)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Group,
            commit_interval: Duration::from_millis(10),
            checkpoint_records: 1000,
            checkpoint_interval: Duration::from_secs(5),
            segment_bytes: 64 << 20,
            redactor: Arc::new(Placeholder),
            min_free: 0,
        }
    }
}

/// The `prev` of the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// A queued batch is written once it holds this many bytes.
const QUEUE_FLUSH_AT: usize = 1 << 20;
/// Past this, `append` writes the queue itself rather than let it grow.
const QUEUE_LIMIT: usize = 16 << 20;
/// A torn tail longer than this is not repaired by dropping it: something else is wrong.
const MAX_REPAIR: u64 = 1 << 20;

/// The file name of segment `n`.
pub fn segment_name(n: u64) -> String {
    format!("{n:08}.jsonl")
}

/// The segments in `dir`, by number.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_suffix(".jsonl")?;
            (n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit())).then(|| (n.parse().ok(), e.path()))
        })
        .filter_map(|(n, p)| Some((n?, p)))
        .collect();
    found.sort();
    Ok(found)
}

/// A stored line's leading fields: `{"seq":N,"prev":"<hex>","kind":"K","event":"E",`.
#[derive(Debug, PartialEq, Eq)]
pub struct Prefix<'a> {
    /// The record's place.
    pub seq: u64,
    /// The previous line's hash, as hex.
    pub prev: &'a [u8],
    /// The kind's name.
    pub kind: &'a [u8],
    /// The event's name.
    pub event: &'a [u8],
}

/// Reads a line's prefix without parsing the rest; `None` when it is not a stored record's.
pub fn parse_prefix(line: &[u8]) -> Option<Prefix<'_>> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let seq = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b",\"prev\":\"")?;
    let (prev, rest) = (rest.get(..64)?, rest.get(64..)?);
    let rest = rest.strip_prefix(b"\",\"kind\":\"")?;
    let k = memchr::memchr(b'"', rest)?;
    let (kind, rest) = (&rest[..k], &rest[k..]);
    let rest = rest.strip_prefix(b"\",\"event\":\"")?;
    let e = memchr::memchr(b'"', rest)?;
    Some(Prefix { seq, prev, kind, event: &rest[..e] })
}

/// The store.
pub struct Store {
    shared: Arc<Shared>,
    /// The commit thread; it ends with the closing checkpoint, whose result it returns.
    committer: Mutex<Option<std::thread::JoinHandle<Result<(), AuditError>>>>,
    repaired: Option<Repair>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

/// A torn tail the store repaired when it was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    /// The segment.
    pub segment: PathBuf,
    /// Where the store now ends.
    pub offset: u64,
    /// The bytes dropped after it.
    pub dropped: u64,
}

struct Shared {
    dir: PathBuf,
    key: HostKey,
    options: Options,
    queue: Mutex<Queue>,
    wake: Condvar,
    writer: Mutex<Writer>,
    failed: Mutex<Option<String>>,
    /// Set once the filesystem's free space fell below `min_free`: the free bytes then.
    low_space: std::sync::atomic::AtomicU64,
    /// Bytes of records queued by this process.
    appended: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Queue {
    /// Encoded bodies, back to back.
    bytes: Vec<u8>,
    /// Where each body ends in `bytes`.
    ends: Vec<usize>,
    /// Tickets handed out (one per record).
    issued: u64,
    closing: bool,
}

struct Writer {
    lock: File,
    tail: Tail,
    /// Tickets written, and synced.
    written: u64,
    synced: u64,
    last_checkpoint: Instant,
    /// The head copy written last.
    head_slot: usize,
    /// When free space was last checked, and the bytes written since.
    space_checked: Instant,
    written_since_check: u64,
}

/// Where the chain ends.
struct Tail {
    number: u64,
    path: PathBuf,
    file: File,
    end: u64,
    seq: u64,
    hash: [u8; 32],
    /// The last record a checkpoint covers.
    checkpointed: u64,
}

/// A record's place in the queue; [`Store::wait`] waits for it to be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

impl Store {
    /// Opens (or creates) the store in `dir`, repairing a torn tail, and starts its commit
    /// thread. `dir` is made 0700; one that others can enter or another user owns is refused.
    pub fn open(dir: &Path, key: HostKey, options: Options) -> Result<Store, AuditError> {
        private_dir(dir)?;
        if options.min_free > 0 {
            let free = free_space(dir).map_err(|source| AuditError::Open { path: dir.to_path_buf(), source })?;
            if free < options.min_free {
                return Err(AuditError::LowSpace { path: dir.to_path_buf(), free, floor: options.min_free });
            }
        }
        let open_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AuditError::Open { path, source }
        };
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(open_err(&lock_path))?;
        let _held = Flock::exclusive(&lock).map_err(open_err(&lock_path))?;
        let (newest_head, restored) = ensure_heads(dir, &key)?;
        let (tail, repaired) = Tail::open(dir)?;
        check_not_cut(dir, &key, &tail)?;
        drop(_held);
        let writer = Writer {
            lock,
            tail,
            written: 0,
            synced: 0,
            last_checkpoint: Instant::now(),
            // The next head goes over the older copy, so the two stay one checkpoint apart
            // whichever process writes them.
            head_slot: newest_head,
            space_checked: Instant::now(),
            written_since_check: 0,
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            key,
            options,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            writer: Mutex::new(writer),
            failed: Mutex::new(None),
            low_space: std::sync::atomic::AtomicU64::new(u64::MAX),
            appended: std::sync::atomic::AtomicU64::new(0),
        });
        let for_thread = shared.clone();
        let committer = std::thread::Builder::new()
            .name("audit-commit".into())
            .spawn(move || for_thread.commit_loop())
            .map_err(open_err(dir))?;
        let store = Store { shared, committer: Mutex::new(Some(committer)), repaired: repaired.clone() };
        if let Some(r) = repaired {
            store.commit(repair_record(&r))?;
        }
        if let Some(slot) = restored {
            let mut record = Record::new(Kind::Lifecycle, "store_head_restored", "store");
            record.data.insert("restored".into(), json!(HEADS[slot]));
            record.data.insert("from".into(), json!(HEADS[slot ^ 1]));
            store.commit(record)?;
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The public key its checkpoints are signed with.
    pub fn public_key(&self) -> crate::PublicKey {
        self.shared.key.public()
    }

    /// The torn tail repaired when the store was opened, if there was one.
    pub fn repaired(&self) -> Option<&Repair> {
        self.repaired.as_ref()
    }

    /// Queues `record` (redacted first); it is written within the commit interval. An error
    /// means the store takes nothing more: the caller must deny what the record describes.
    pub fn append(&self, record: Record) -> Result<Ticket, AuditError> {
        self.shared.append(record)
    }

    /// As [`Store::append`], for the records a session writes as it ends (bounded in number):
    /// taken below the free-space floor too, as the records that end sessions are.
    pub fn append_closing(&self, record: Record) -> Result<Ticket, AuditError> {
        self.shared.append_inner(record, true)
    }

    /// Appends `record` and returns once it is stored as the durability setting asks.
    pub fn commit(&self, record: Record) -> Result<(), AuditError> {
        let ticket = self.shared.append(record)?;
        self.wait(ticket)
    }

    /// Returns once the record behind `ticket` is stored as the durability setting asks.
    pub fn wait(&self, ticket: Ticket) -> Result<(), AuditError> {
        let shared = &self.shared;
        let mut w = shared.lock_writer();
        if w.written < ticket.0 {
            shared.flush(&mut w, None)?;
        }
        if shared.options.durability == Durability::Sync && w.synced < ticket.0 {
            shared.sync(&mut w)?;
        }
        Ok(())
    }

    /// Writes and syncs everything queued so far.
    pub fn sync(&self) -> Result<(), AuditError> {
        let mut w = self.shared.lock_writer();
        self.shared.flush(&mut w, None)?;
        self.shared.sync(&mut w)
    }

    /// Writes everything queued, then a signed checkpoint over it, synced.
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut w = self.shared.lock_writer();
        self.shared.flush(&mut w, Some("checkpoint"))?;
        self.shared.sync(&mut w)
    }

    /// Ends with a checkpoint over everything queued, signed and synced, and stops the commit
    /// thread. The store takes nothing more.
    pub fn close(&self) -> Result<(), AuditError> {
        self.close_with(|| ()).1
    }

    /// As [`Store::close`], running `meanwhile` on this thread while the commit thread writes the
    /// closing checkpoint and waits for the disk; returns what `meanwhile` returned and how the
    /// close went.
    pub fn close_with<T>(&self, meanwhile: impl FnOnce() -> T) -> (T, Result<(), AuditError>) {
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.closing = true;
        }
        self.shared.wake.notify_all();
        let committer = self.committer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let value = meanwhile();
        let closed = match committer.map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            // No commit thread (closed before), or it panicked: checkpoint here.
            Some(Err(_)) | None => self.checkpoint(),
        };
        (value, closed)
    }

    /// The bytes of the records this process has queued.
    pub fn bytes_appended(&self) -> u64 {
        self.shared.appended.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The first write failure, if the store has had one.
    pub fn failure(&self) -> Option<String> {
        self.shared.failed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.committer.lock().map(|c| c.is_some()).unwrap_or(false) {
            let _ = self.close();
        }
    }
}

impl Shared {
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unwritable(&self, w: &Writer) -> AuditError {
        let cause = self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
        AuditError::Unwritable { path: w.tail.path.clone(), cause }
    }

    fn fail(&self, path: &Path, e: &std::io::Error) -> AuditError {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let cause = failed.get_or_insert_with(|| e.to_string()).clone();
        AuditError::Unwritable { path: path.to_path_buf(), cause }
    }

    fn append(&self, record: Record) -> Result<Ticket, AuditError> {
        self.append_inner(record, false)
    }

    fn append_inner(&self, mut record: Record, closing: bool) -> Result<Ticket, AuditError> {
        if let Some(cause) = self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(AuditError::Unwritable { path: self.dir.clone(), cause });
        }
        let free = self.low_space.load(std::sync::atomic::Ordering::Relaxed);
        if free != u64::MAX && !closing && !matches!(record.kind, Kind::Lifecycle | Kind::Limit) {
            return Err(AuditError::LowSpace { path: self.dir.clone(), free, floor: self.options.min_free });
        }
        let redactor = &self.options.redactor;
        for v in [record.input.as_mut(), record.outcome.as_mut()].into_iter().flatten() {
            redactor.redact(v);
        }
        if !record.data.is_empty() {
            let mut data = Value::Object(std::mem::take(&mut record.data));
            redactor.redact(&mut data);
            if let Value::Object(map) = data {
                record.data = map;
            }
        }
        let mut body = Vec::with_capacity(256);
        record.encode_body(&mut body);
        self.appended.fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let (ticket, size) = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.closing {
                return Err(AuditError::Closed);
            }
            q.bytes.extend_from_slice(&body);
            let end = q.bytes.len();
            q.ends.push(end);
            q.issued += 1;
            (Ticket(q.issued), end)
        };
        if size == body.len() {
            // The first record of a batch: the commit thread, if idle, starts its interval.
            self.wake.notify_one();
        }
        if size >= QUEUE_LIMIT {
            // Far behind: write here, waiting for whoever writes now, rather than queue without
            // bound.
            let mut w = self.lock_writer();
            self.flush(&mut w, None)?;
        } else if size >= QUEUE_FLUSH_AT {
            // A full batch: the commit thread writes it now, on its own core.
            self.wake.notify_one();
        }
        Ok(ticket)
    }

    fn sync(&self, w: &mut Writer) -> Result<(), AuditError> {
        if w.synced < w.written {
            let upto = w.written;
            w.tail.file.sync_data().map_err(|e| self.fail(&w.tail.path, &e))?;
            w.synced = upto;
        }
        Ok(())
    }

    /// Writes the queue as one batch (chained, with the checkpoints that fall due, and a
    /// checkpoint named `checkpoint` at the end if asked), under the store's lock.
    fn flush(&self, w: &mut Writer, checkpoint: Option<&str>) -> Result<(), AuditError> {
        if self.failed.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            return Err(self.unwritable(w));
        }
        let (bytes, ends, upto) = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut q.bytes), std::mem::take(&mut q.ends), q.issued)
        };
        if ends.is_empty() && (checkpoint.is_none() || w.tail.checkpointed == w.tail.seq && w.written == upto) {
            w.written = upto;
            return Ok(());
        }
        let lock_path = self.dir.join("lock");
        let _held = Flock::exclusive(&w.lock).map_err(|e| self.fail(&lock_path, &e))?;
        let repaired = w.tail.refresh(&self.dir).inspect_err(|e| {
            self.failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
        })?;
        let mut next = Chain { seq: w.tail.seq, hash: w.tail.hash, checkpointed: w.tail.checkpointed };
        let mut out = Vec::with_capacity(bytes.len() + ends.len() * 96 + 512);
        if let Some(r) = repaired {
            let mut body = Vec::with_capacity(256);
            repair_record(&r).encode_body(&mut body);
            next.push(&mut out, &body);
        }
        let mut start = 0;
        let mut last_checkpoint = None;
        for end in ends {
            next.push(&mut out, &bytes[start..end]);
            start = end;
            if next.seq - next.checkpointed >= self.options.checkpoint_records {
                last_checkpoint = Some(self.push_checkpoint(&mut out, &mut next, "checkpoint", w.tail.number));
            }
        }
        if let Some(event) = checkpoint
            && next.checkpointed < next.seq
        {
            last_checkpoint = Some(self.push_checkpoint(&mut out, &mut next, event, w.tail.number));
        }
        let sealing = w.tail.end + out.len() as u64 >= self.options.segment_bytes;
        if sealing {
            last_checkpoint = Some(self.push_checkpoint(&mut out, &mut next, "seal", w.tail.number));
        }
        if let Err(e) = w.tail.file.write_all(&out) {
            // A partial batch is cut off, so the store still ends on a whole record.
            let _ = w.tail.file.set_len(w.tail.end);
            return Err(self.fail(&w.tail.path, &e));
        }
        w.tail.end += out.len() as u64;
        w.written_since_check += out.len() as u64;
        self.check_space(&mut w.space_checked, &mut w.written_since_check);
        w.tail.seq = next.seq;
        w.tail.hash = next.hash;
        w.tail.checkpointed = next.checkpointed;
        w.written = upto;
        if let Some(line) = last_checkpoint {
            w.last_checkpoint = Instant::now();
            // The checkpoint on disk before the head names it.
            w.tail.file.sync_data().map_err(|e| self.fail(&w.tail.path, &e))?;
            w.synced = upto;
            w.head_slot ^= 1;
            write_head(&self.dir, w.head_slot, w.tail.number, &out[line])
                .map_err(|e| self.fail(&self.dir.join(HEADS[w.head_slot]), &e))?;
        }
        if sealing {
            let tail = Tail::begin(&self.dir, w.tail.number + 1, w.tail.seq, w.tail.hash, w.tail.checkpointed)?;
            w.tail = tail;
        }
        Ok(())
    }

    /// Notes, at most once a second or every MiB written, whether the filesystem's free space
    /// fell below the floor (it can fall for reasons other than this store).
    fn check_space(&self, checked: &mut Instant, since: &mut u64) {
        if self.options.min_free == 0 || *since < SPACE_CHECK_BYTES && checked.elapsed() < SPACE_CHECK_INTERVAL {
            return;
        }
        *checked = Instant::now();
        *since = 0;
        if let Ok(free) = free_space(&self.dir)
            && free < self.options.min_free
        {
            self.low_space.store(free, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Appends a checkpoint over the chain so far; returns where its line lies in `out`.
    fn push_checkpoint(
        &self,
        out: &mut Vec<u8>,
        chain: &mut Chain,
        event: &str,
        segment: u64,
    ) -> std::ops::Range<usize> {
        let record = checkpoint_record(&self.key, event, chain.seq, &chain.hash, segment);
        let mut body = Vec::with_capacity(400);
        record.encode_body(&mut body);
        let start = out.len();
        chain.push(out, &body);
        chain.checkpointed = chain.seq;
        start..out.len() - 1
    }

    /// The commit thread: writes and syncs each batch within the commit interval of its first
    /// record, and checkpoints records left unsigned for the checkpoint interval. Idle, it sleeps
    /// until a record comes or a checkpoint falls due; a session that records nothing costs no
    /// wake-ups.
    fn commit_loop(&self) -> Result<(), AuditError> {
        loop {
            // Records issued after `seen` wake the thread; records written before it (by a
            // `commit`) show as unsynced.
            let seen = self.queue.lock().unwrap_or_else(|e| e.into_inner()).issued;
            let (checkpoint_due, unsynced) = {
                let w = self.lock_writer();
                let due = (w.tail.checkpointed < w.tail.seq)
                    .then(|| self.options.checkpoint_interval.saturating_sub(w.last_checkpoint.elapsed()));
                (due, w.written > w.synced)
            };
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.ends.is_empty() && q.issued == seen && !unsynced && !q.closing {
                // Idle: until a record comes, a checkpoint falls due, or the store closes.
                let wait = checkpoint_due.unwrap_or(IDLE_WAKE);
                q = self
                    .wake
                    .wait_timeout_while(q, wait, |q| !q.closing && q.issued == seen)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if (!q.ends.is_empty() || q.issued != seen || unsynced) && !q.closing {
                // A batch has begun: it gathers for the commit interval, or until it is large.
                q = self
                    .wake
                    .wait_timeout_while(q, self.options.commit_interval, |q| {
                        !q.closing && q.bytes.len() < QUEUE_FLUSH_AT
                    })
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let closing = q.closing;
            drop(q);
            let mut w = self.lock_writer();
            if closing {
                // The rest, with the closing checkpoint, synced once (for `close`).
                return self.flush(&mut w, Some("checkpoint")).and_then(|()| self.sync(&mut w));
            }
            let due =
                w.tail.checkpointed < w.tail.seq && w.last_checkpoint.elapsed() >= self.options.checkpoint_interval;
            self.flush(&mut w, due.then_some("checkpoint")).and_then(|()| self.sync(&mut w))?;
        }
    }
}

/// How often, at most, the free space under the store is checked while it is written.
const SPACE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
const SPACE_CHECK_BYTES: u64 = 1 << 20;

/// The bytes free to this user on the filesystem holding `dir`.
fn free_space(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// How long an idle commit thread sleeps when nothing is due (it is woken by the next record).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// The chain as a batch extends it.
struct Chain {
    seq: u64,
    hash: [u8; 32],
    checkpointed: u64,
}

impl Chain {
    /// Appends `body` as the next line: `{"seq":N,"prev":"<hex>",` + body + newline.
    fn push(&mut self, out: &mut Vec<u8>, body: &[u8]) {
        let start = out.len();
        self.seq += 1;
        encode_line(out, self.seq, &self.hash, body);
        self.hash = *blake3::hash(&out[start..]).as_bytes();
        out.push(b'\n');
    }
}

/// Refuses a store whose newest valid head names a record past its end: records were cut
/// from it, and writing on would hide the cut under a new head.
fn check_not_cut(dir: &Path, key: &HostKey, tail: &Tail) -> Result<(), AuditError> {
    let public = key.public();
    let newest = HEADS
        .iter()
        .filter_map(|h| {
            let text = std::fs::read(dir.join(h)).ok()?;
            let line = text.splitn(2, |b| *b == b'\n').nth(1)?;
            crate::verify::head_seq(line.strip_suffix(b"\n").unwrap_or(line), &public)
        })
        .max()
        .unwrap_or(0);
    if newest > tail.seq {
        return Err(AuditError::Corrupt {
            path: tail.path.clone(),
            why: format!(
                "the store ends at record {}, but its signed head names record {newest}: records were cut from its \
                 end; nothing more is written to it. Run `portcullis audit verify`, keep the store as evidence, and \
                 move it aside to start a new one",
                tail.seq
            ),
        });
    }
    Ok(())
}

/// Appends a stored line without its newline: `{"seq":N,"prev":"<hex>",` + body.
fn encode_line(out: &mut Vec<u8>, seq: u64, prev: &[u8; 32], body: &[u8]) {
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    hex::encode_into(out, prev);
    out.extend_from_slice(b"\",");
    out.extend_from_slice(body);
}

/// A checkpoint's record: the signed claim that the chain's record `covers` hashes to `hash`.
fn checkpoint_record(key: &HostKey, event: &str, covers: u64, hash: &[u8; 32], segment: u64) -> Record {
    let signature = key.sign(&checkpoint_message(covers, hash));
    let mut record = Record::new(Kind::Checkpoint, event, "store");
    record.data = json!({
        "covers": covers,
        "hash": hex::encode(hash),
        "key": key.public().to_string(),
        "sig": hex::encode(&signature),
        "segment": segment,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    record
}

/// Makes sure the store can prove its own length, and that it was not cut back; returns the
/// slot of the newest valid head (the next head is written to the other, the older one) and
/// a head copy restored from the other, if one was.
///
/// A new store gets its heads before its first segment, naming the empty chain (record 0,
/// event `created`, signed like any checkpoint).
///
/// SECURITY: verification finds records cut from the end by comparing the chain with the
/// newest head. Heads that could be missing for an innocent reason would let a cut store read
/// as intact with its heads deleted; with heads made at creation, a store that has segments (or
/// a prune marker) but no valid head was tampered with, and is not written to: the next session
/// would write a new head over the cut. One copy missing while the other verifies (a store
/// written before heads were made at creation, or one copy deleted) is restored from the other,
/// and the restoration is recorded in the chain (`store_head_restored`): the cut that could hide
/// behind it reaches back no further than the older copy, as with a copy torn by a crash.
fn ensure_heads(dir: &Path, key: &HostKey) -> Result<(usize, Option<usize>), AuditError> {
    let io = |path: PathBuf| move |source| AuditError::Open { path, source };
    let public = key.public();
    let read = |slot: usize| -> Result<Option<Option<u64>>, AuditError> {
        match std::fs::read(dir.join(HEADS[slot])) {
            Ok(text) => {
                let line = text.splitn(2, |b| *b == b'\n').nth(1).unwrap_or_default();
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                Ok(Some(crate::verify::head_seq(line, &public)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(dir.join(HEADS[slot]))(e)),
        }
    };
    let heads = [read(0)?, read(1)?];
    let fresh =
        segments(dir).map_err(io(dir.to_path_buf()))?.is_empty() && dir.join("PRUNED").symlink_metadata().is_err();
    let newest = (0..HEADS.len()).filter_map(|i| Some((heads[i]??, i))).max().map(|(_, i)| i);
    let corrupt = |why: &str| AuditError::Corrupt {
        path: dir.join(HEADS[0]),
        why: format!(
            "{why}, so the store cannot prove its length (records may have been cut from its end); nothing more \
             is written to it. Run `portcullis audit verify`, keep the store as evidence, and move it aside to \
             start a new one"
        ),
    };
    let write = |slot: usize, line: &[u8], segment: u64| -> Result<(), AuditError> {
        write_head(dir, slot, segment, line).map_err(io(dir.join(HEADS[slot])))?;
        File::open(dir.join(HEADS[slot])).and_then(|f| f.sync_all()).map_err(io(dir.join(HEADS[slot])))
    };
    let sync_dir = || File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir.to_path_buf()));
    match (heads, newest) {
        ([Some(_), Some(_)], Some(slot)) => Ok((slot, None)),
        ([Some(_), Some(_)], None) if !fresh => Err(corrupt("no copy of the store's signed head verifies")),
        (_, Some(slot)) if !fresh => {
            // One copy missing, the other valid: restored from it.
            let missing = slot ^ 1;
            if heads[missing].is_some() {
                return Ok((slot, None));
            }
            let text = std::fs::read(dir.join(HEADS[slot])).map_err(io(dir.join(HEADS[slot])))?;
            std::fs::write(dir.join(HEADS[missing]), &text).map_err(io(dir.join(HEADS[missing])))?;
            File::open(dir.join(HEADS[missing])).and_then(|f| f.sync_all()).map_err(io(dir.join(HEADS[missing])))?;
            sync_dir()?;
            Ok((slot, Some(missing)))
        }
        _ if !fresh => Err(corrupt("the store's signed heads are missing")),
        _ => {
            // A new store (or one whose creation was cut short): both copies name the empty chain.
            let mut body = Vec::with_capacity(400);
            checkpoint_record(key, "created", 0, &GENESIS, 1).encode_body(&mut body);
            let mut line = Vec::with_capacity(body.len() + 96);
            encode_line(&mut line, 0, &GENESIS, &body);
            for slot in 0..HEADS.len() {
                write(slot, &line, 1)?;
            }
            // The heads' names on disk before the first segment's.
            sync_dir()?;
            Ok((1, None))
        }
    }
}

/// An exclusive `flock`, released on drop.
pub(crate) struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    pub(crate) fn exclusive(file: &'a File) -> std::io::Result<Self> {
        rustix::fs::flock(file, FlockOperation::LockExclusive)?;
        Ok(Flock(file))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, FlockOperation::Unlock);
    }
}

impl Tail {
    /// The chain's end in the store at `dir`, with a torn tail cut off. Called under the lock.
    fn open(dir: &Path) -> Result<(Tail, Option<Repair>), AuditError> {
        let found = segments(dir).map_err(|source| AuditError::Open { path: dir.to_path_buf(), source })?;
        let Some((number, path)) = found.last().cloned() else {
            // A pruned store's chain goes on from the marker; a new one from nothing.
            let (seq, hash) = crate::verify::pruned_through(dir).map_or((0, GENESIS), |m| (m.seq, m.hash));
            let first = crate::verify::pruned_through(dir).map_or(1, |m| m.segment + 1);
            return Ok((Tail::begin(dir, first, seq, hash, seq)?, None));
        };
        let mut file = open_segment(&path)?;
        let corrupt = |why: String| AuditError::Corrupt { path: path.clone(), why };
        let len = file.metadata().map_err(|source| AuditError::Open { path: path.clone(), source })?.len();
        let (keep, last) =
            last_good_line(&mut file, len).map_err(|source| AuditError::Open { path: path.clone(), source })?;
        if len - keep > MAX_REPAIR {
            return Err(corrupt(format!(
                "its last {} bytes are not whole records; run `portcullis audit verify`",
                len - keep
            )));
        }
        let repaired = (keep < len).then(|| Repair { segment: path.clone(), offset: keep, dropped: len - keep });
        if repaired.is_some() {
            file.set_len(keep)
                .and_then(|()| file.sync_all())
                .map_err(|source| AuditError::Open { path: path.clone(), source })?;
        }
        let tail = match last {
            Some(line) => {
                let prefix = parse_prefix(&line).ok_or_else(|| corrupt("its last line is not a record".into()))?;
                let hash = *blake3::hash(&line).as_bytes();
                let checkpointed = if prefix.kind == b"checkpoint" { prefix.seq } else { 0 };
                if prefix.kind == b"checkpoint" && prefix.event == b"seal" {
                    return Ok((Tail::begin(dir, number + 1, prefix.seq, hash, checkpointed)?, repaired));
                }
                Tail { number, path, file, end: keep, seq: prefix.seq, hash, checkpointed }
            }
            None => {
                // An empty segment: the chain ends in the one before it (or the prune marker).
                let (seq, hash) = match found.len().checked_sub(2).map(|i| &found[i]) {
                    Some((_, before)) => {
                        let mut f = open_segment(before)?;
                        let n = f.metadata().map_err(|source| AuditError::Open { path: before.clone(), source })?.len();
                        let (_, line) = last_good_line(&mut f, n)
                            .map_err(|source| AuditError::Open { path: before.clone(), source })?;
                        let line = line.ok_or_else(|| corrupt("it and the segment before it are empty".into()))?;
                        let p =
                            parse_prefix(&line).ok_or_else(|| corrupt("the segment before it ends badly".into()))?;
                        (p.seq, *blake3::hash(&line).as_bytes())
                    }
                    None => crate::verify::pruned_through(dir).map_or((0, GENESIS), |m| (m.seq, m.hash)),
                };
                Tail { number, path, file, end: 0, seq, hash, checkpointed: seq }
            }
        };
        Ok((tail, repaired))
    }

    /// Starts segment `number`, continuing the chain from (`seq`, `hash`).
    fn begin(dir: &Path, number: u64, seq: u64, hash: [u8; 32], checkpointed: u64) -> Result<Tail, AuditError> {
        let path = dir.join(segment_name(number));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| AuditError::Open { path: path.clone(), source })?;
        let end = file.metadata().map_err(|source| AuditError::Open { path: path.clone(), source })?.len();
        Ok(Tail { number, path, file, end, seq, hash, checkpointed })
    }

    /// Catches up with what other writers appended since this one last wrote; returns the torn
    /// tail it cut off, if a writer died mid-write.
    fn refresh(&mut self, dir: &Path) -> Result<Option<Repair>, AuditError> {
        let mut repaired = None;
        loop {
            let len =
                self.file.metadata().map_err(|source| AuditError::Open { path: self.path.clone(), source })?.len();
            if len < self.end {
                // Writers only append (and cut off partial records past their own end): the
                // segment was cut behind this writer's back.
                return Err(AuditError::Corrupt {
                    path: self.path.clone(),
                    why: format!(
                        "it is {len} bytes, shorter than the {} this writer left: records were cut from its end",
                        self.end
                    ),
                });
            }
            if len == self.end {
                let next = dir.join(segment_name(self.number + 1));
                if !next.exists() {
                    return Ok(repaired);
                }
            }
            let (keep, last) = last_good_line(&mut self.file, len)
                .map_err(|source| AuditError::Open { path: self.path.clone(), source })?;
            if keep != len {
                // Writers hold the lock while they write and cut off a batch that failed, so a
                // partial record here is one a writer left as it died: cut off, as at open.
                if len - keep > MAX_REPAIR {
                    return Err(AuditError::Corrupt {
                        path: self.path.clone(),
                        why: format!("its last {} bytes are not whole records", len - keep),
                    });
                }
                self.file
                    .set_len(keep)
                    .and_then(|()| self.file.sync_data())
                    .map_err(|source| AuditError::Open { path: self.path.clone(), source })?;
                repaired = Some(Repair { segment: self.path.clone(), offset: keep, dropped: len - keep });
            }
            if let Some(line) = last {
                let p = parse_prefix(&line).ok_or_else(|| AuditError::Corrupt {
                    path: self.path.clone(),
                    why: "its last line is not a record".into(),
                })?;
                self.seq = p.seq;
                self.hash = *blake3::hash(&line).as_bytes();
                if p.kind == b"checkpoint" {
                    self.checkpointed = p.seq;
                }
                self.end = keep;
                if p.kind == b"checkpoint" && p.event == b"seal" {
                    // The next segment may hold records already, written by the writer that
                    // sealed this one: read its end too.
                    *self = Tail::begin(dir, self.number + 1, self.seq, self.hash, self.checkpointed)?;
                    self.end = 0;
                    continue;
                }
            }
            self.end = keep;
            return Ok(repaired);
        }
    }
}

/// The record of a torn tail cut off.
fn repair_record(r: &Repair) -> Record {
    let mut record = Record::new(Kind::Lifecycle, "store_repaired", "store");
    record.data = json!({"segment": r.segment, "offset": r.offset, "dropped_bytes": r.dropped})
        .as_object()
        .cloned()
        .unwrap_or_default();
    record
}

fn open_segment(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(|source| AuditError::Open { path: path.to_path_buf(), source })
}

/// Where the last whole record in `file` (of `len` bytes) ends, and that record: bytes after
/// the last newline, and trailing lines that are not records, are not whole.
fn last_good_line(file: &mut File, len: u64) -> std::io::Result<(u64, Option<Vec<u8>>)> {
    let whole = |line: &[u8]| parse_prefix(line).is_some() && line.last() == Some(&b'}');
    // Small first: the last record is usually a checkpoint of a few hundred bytes.
    let mut window = 8 * 1024u64;
    loop {
        let from = len.saturating_sub(window);
        let mut buf = vec![0; (len - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut buf)?;
        // Lines from the newest back; everything after `cut` is dropped so far.
        let mut cut = buf.len();
        while let Some(nl) = memchr::memrchr(b'\n', &buf[..cut]) {
            let start = match memchr::memrchr(b'\n', &buf[..nl]) {
                Some(i) => i + 1,
                None if from == 0 => 0,
                None => break,
            };
            if whole(&buf[start..nl]) {
                return Ok((from + nl as u64 + 1, Some(buf[start..nl].to_vec())));
            }
            cut = start;
            if len - (from + start as u64) > MAX_REPAIR {
                return Ok((from + start as u64, None));
            }
        }
        if from == 0 {
            return Ok((0, None));
        }
        // The newest whole line may start before the window: widen it.
        window *= 4;
    }
}

/// The two copies of the newest checkpoint, written in turn: a write torn by a crash leaves the
/// other whole. Each is overwritten in place (a rename over the old file would make the
/// filesystem flush it, a tenth of a millisecond per checkpoint).
pub const HEADS: [&str; 2] = ["HEAD.0", "HEAD.1"];

/// Writes head `slot`: the segment number, then the checkpoint's line.
fn write_head(dir: &Path, slot: usize, segment: u64, line: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(dir.join(HEADS[slot]))?;
    let mut text = format!("{segment}\n").into_bytes();
    text.extend_from_slice(line);
    text.push(b'\n');
    f.write_all_at(&text, 0)?;
    f.set_len(text.len() as u64)
}

/// Makes `dir` (and missing parents) 0700, or checks that it is private to this user.
fn private_dir(dir: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |source| AuditError::Open { path: dir.to_path_buf(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    let meta = std::fs::symlink_metadata(dir).map_err(err)?;
    let not_private = |why: String| AuditError::NotPrivate { path: dir.to_path_buf(), why };
    if !meta.is_dir() {
        return Err(not_private("it is not a directory".into()));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(not_private(format!("it is owned by uid {}, not by this user", meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}
