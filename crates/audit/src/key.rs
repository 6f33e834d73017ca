//! The host's checkpoint key: an Ed25519 key made at first use, kept 0600 beside the store and
//! outside every sandbox, and what it signs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::{AuditError, hex};

/// The host's signing key.
pub struct HostKey {
    signing: SigningKey,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey").field("public", &self.public().to_string()).finish_non_exhaustive()
    }
}

/// A public key, as checkpoints name it (64 hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes: [u8; 32] = hex::decode(s.trim()).ok_or_else(|| format!("`{s}` is not 64 hex digits"))?;
        VerifyingKey::from_bytes(&bytes).map(PublicKey).map_err(|_| format!("`{s}` is not an Ed25519 public key"))
    }
}

/// What a checkpoint's signature covers: the record before it, by place and hash.
pub(crate) fn checkpoint_message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = b"portcullis-audit checkpoint v1\0".to_vec();
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(hash);
    m
}

/// What a prune marker's signature covers: the last record removed, by segment, place and hash.
pub(crate) fn prune_message(segment: u64, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = b"portcullis-audit prune v1\0".to_vec();
    m.extend_from_slice(&segment.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(hash);
    m
}

impl HostKey {
    /// The key in `path` (hex of the 32-byte secret), made there (mode 0600) if missing. A key
    /// file that others may read, or that another user owns, is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, AuditError> {
        let err = |source| AuditError::Key { path: path.to_path_buf(), source };
        match OpenOptions::new().read(true).custom_flags(libc_nofollow()).open(path) {
            Ok(file) => Self::read(file, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                fill_random(&mut secret).map_err(err)?;
                // Written whole under a name of its own, then linked into place: a session
                // starting at the same moment sees no key or the whole key, never an empty file.
                let mut suffix = [0u8; 8];
                fill_random(&mut suffix).map_err(err)?;
                let mut tmp = path.as_os_str().to_owned();
                tmp.push(format!(".{}.tmp", hex::encode(&suffix)));
                let tmp = std::path::PathBuf::from(tmp);
                let written = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc_nofollow())
                    .open(&tmp)
                    .and_then(|mut file| {
                        file.write_all(format!("{}\n", hex::encode(&secret)).as_bytes())?;
                        file.sync_all()
                    });
                let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(HostKey { signing: SigningKey::from_bytes(&secret) }),
                    // Another writer made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
                    Err(e) => Err(err(e)),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    /// The key in `path`, which must exist.
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc_nofollow())
            .open(path)
            .map_err(|source| AuditError::Key { path: path.to_path_buf(), source })?;
        Self::read(file, path)
    }

    fn read(mut file: File, path: &Path) -> Result<Self, AuditError> {
        let bad = |why: String| AuditError::KeyUnsafe { path: path.to_path_buf(), why };
        let meta = file.metadata().map_err(|source| AuditError::Key { path: path.to_path_buf(), source })?;
        // SECURITY: a key others can read signs forgeries; one another user owns was not made here.
        if meta.mode() & 0o077 != 0 {
            return Err(bad(format!("its mode is {:o}; it must be 600", meta.mode() & 0o777)));
        }
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(bad(format!("it is owned by uid {}, not by this user", meta.uid())));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|source| AuditError::Key { path: path.to_path_buf(), source })?;
        let secret: [u8; 32] = hex::decode(text.trim()).ok_or_else(|| bad("it does not hold 64 hex digits".into()))?;
        Ok(HostKey { signing: SigningKey::from_bytes(&secret) })
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl PublicKey {
    /// True when `signature` (128 hex digits) signs `message` under this key.
    pub(crate) fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Some(bytes) = hex::decode::<64>(signature) else { return false };
        self.0.verify(message, &Signature::from_bytes(&bytes)).is_ok()
    }
}

/// Where the host key lives for a store at `store`: `key` beside it, outside the store itself
/// (so a copy of the store for a reviewer never carries the secret).
pub fn default_key_path(store: &Path) -> PathBuf {
    store.parent().unwrap_or(store).join("audit.key")
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        filled += rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Sessions starting together once read a key file another had created but not yet written:
    // "it does not hold 64 hex digits", and the session did not start.
    #[test]
    fn sessions_starting_together_all_get_the_one_key() {
        for round in 0..20 {
            let dir = std::env::temp_dir().join(format!("portcullis-key-race-{}-{round}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("audit.key");
            let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
                let handles: Vec<_> =
                    (0..6).map(|_| s.spawn(|| HostKey::load_or_create(&path).map(|k| k.signing.to_bytes()))).collect();
                handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
            });
            assert!(keys.windows(2).all(|w| w[0] == w[1]), "round {round}: two keys");
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
            assert_eq!(left.len(), 1, "no temporary file is left: {left:?}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_key_is_made_once_private_and_refused_when_others_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("portcullis-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.key");
        let a = HostKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let b = HostKey::load_or_create(&path).unwrap();
        assert_eq!(a.public(), b.public());
        let m = checkpoint_message(3, &[7; 32]);
        let sig = hex::encode(&a.sign(&m));
        assert!(b.public().verifies(&m, &sig));
        assert!(!b.public().verifies(&checkpoint_message(4, &[7; 32]), &sig));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = HostKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("644"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
